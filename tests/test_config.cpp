// The config table: parsing, defaults, --set, every kind of error with its location, the
// resolved YAML, and the README's reference generated from the table.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "mdn/config.hpp"
#include "mdn/error.hpp"
#include "test_paths.hpp"

namespace mdn {
namespace {

const char* kMinimal = R"(run:
  dir: runs/a
data:
  train: data/train.h5
train:
  epochs: 3
)";

std::string error_of(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    parse_config(text, "c.yaml", sets);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::input);
    return e.what();
  }
  return "no error";
}

TEST(Config, MinimalConfigGetsTheDocumentedDefaults) {
  const Config c = parse_config(kMinimal, "c.yaml");
  EXPECT_EQ(c.run.dir, "runs/a");
  EXPECT_EQ(c.run.seed, 0u);
  EXPECT_EQ(c.data.x, "x");
  EXPECT_EQ(c.data.y, "y");
  EXPECT_TRUE(c.data.normalize);
  EXPECT_FALSE(c.data.valid.has_value());
  EXPECT_EQ(c.model.activation, Activation::tanh);
  EXPECT_EQ(c.model.sigma, SigmaMode::softplus);
  EXPECT_EQ(c.model.sigma_min, 1e-3);
  EXPECT_EQ(c.train.batch_size, 256);
  EXPECT_EQ(*c.train.micro_batch, 128);  // largest divisor of 256 not above 128
  EXPECT_FALSE(c.train.drop_last);
  EXPECT_EQ(c.train.reduction, Reduction::exact);
  EXPECT_EQ(c.train.nonfinite, Nonfinite::stop);
  EXPECT_FALSE(c.train.max_steps.has_value());
  EXPECT_EQ(c.optimizer.name, OptimizerKind::adam);
  EXPECT_EQ(c.optimizer.schedule.kind, ScheduleKind::constant);
  EXPECT_FALSE(c.clip.global_norm.has_value());
  EXPECT_FALSE(c.clip.value.has_value());
  EXPECT_EQ(c.checkpoint.resume, "auto");
  EXPECT_EQ(c.log.every_steps, 50);
}

TEST(Config, DefaultMicroBatchIsTheLargestDivisorUpTo128) {
  EXPECT_EQ(*parse_config(kMinimal, "c", {"train.batch_size=100"}).train.micro_batch, 100);
  EXPECT_EQ(*parse_config(kMinimal, "c", {"train.batch_size=300"}).train.micro_batch, 100);
  EXPECT_EQ(*parse_config(kMinimal, "c", {"train.batch_size=257"}).train.micro_batch, 1);  // prime
  EXPECT_EQ(*parse_config(kMinimal, "c", {"train.batch_size=1000"}).train.micro_batch, 125);
}

TEST(Config, EveryKindOfValue) {
  const Config c = parse_config(std::string(kMinimal) + R"(model:
  hidden: [8, 16, 4]
  activation: relu
  components: 3
  sigma: exp
  sigma_min: 0.01
optimizer:
  name: sgd
  lr: 1e-2
  momentum: 0.9
  nesterov: yes
  betas: [0.8, 0.99]
  schedule: {name: step, step_size: 10, gamma: 0.5, warmup_steps: 4}
clip:
  global_norm: 1.5
  value: null
checkpoint:
  every_seconds: 600
  resume: never
)", "c.yaml");
  EXPECT_EQ(c.model.hidden, (std::vector<int>{8, 16, 4}));
  EXPECT_EQ(c.model.activation, Activation::relu);
  EXPECT_EQ(c.model.sigma, SigmaMode::exp);
  EXPECT_EQ(c.optimizer.lr, 0.01);
  EXPECT_TRUE(c.optimizer.nesterov);
  EXPECT_EQ(c.optimizer.betas[0], 0.8);
  EXPECT_EQ(c.optimizer.schedule.kind, ScheduleKind::step);
  EXPECT_EQ(c.optimizer.schedule.warmup_steps, 4);
  EXPECT_EQ(*c.clip.global_norm, 1.5);
  EXPECT_FALSE(c.clip.value.has_value());
  EXPECT_EQ(*c.checkpoint.every_seconds, 600.0);
  EXPECT_EQ(c.checkpoint.resume, "never");
  EXPECT_EQ(c.origin.at("model.components"), "c.yaml:10:15");
}

TEST(Config, SetOverridesWithYamlValues) {
  const Config c = parse_config(kMinimal, "c.yaml",
                                {"model.hidden=[64,64,32]", "optimizer.lr=0.02", "data.valid=v.h5",
                                 "clip.value=3", "train.max_steps=10", "train.epochs=null"});
  EXPECT_EQ(c.model.hidden, (std::vector<int>{64, 64, 32}));
  EXPECT_EQ(c.optimizer.lr, 0.02);
  EXPECT_EQ(*c.data.valid, std::vector<std::string>{"v.h5"});
  EXPECT_EQ(*c.clip.value, 3.0);
  EXPECT_EQ(*c.train.max_steps, 10);
  EXPECT_FALSE(c.train.epochs.has_value());
  EXPECT_EQ(c.origin.at("optimizer.lr"), "--set optimizer.lr=0.02");
}

TEST(Config, UnknownKeyNamesTheLineAndSuggests) {
  EXPECT_EQ(error_of(std::string(kMinimal) + "optimizer:\n  lrr: 0.1\n"),
            "c.yaml:8:3: unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'?");
  EXPECT_EQ(error_of(std::string(kMinimal) + "trian:\n  epochs: 1\n"),
            "c.yaml:7:1: unknown key 'trian'; did you mean 'train'?");
  EXPECT_EQ(error_of(std::string(kMinimal) + "colour: blue\n"), "c.yaml:7:1: unknown key 'colour'");
  // The right key in the wrong section.
  EXPECT_EQ(error_of(std::string(kMinimal) + "model:\n  lr: 0.1\n"),
            "c.yaml:8:3: unknown key 'model.lr'; did you mean 'optimizer.lr'?");
}

TEST(Config, WrongTypesAndRanges) {
  EXPECT_EQ(error_of(std::string(kMinimal) + "optimizer:\n  lr: fast\n"),
            "c.yaml:8:7: optimizer.lr: expected a number, got 'fast'");
  EXPECT_EQ(error_of(std::string(kMinimal) + "optimizer:\n  lr: -1\n"),
            "c.yaml:8:7: optimizer.lr: must be > 0, got -1");
  EXPECT_EQ(error_of(kMinimal, {"train.batch_size=0"}),
            "--set train.batch_size=0: train.batch_size: must be >= 1, got 0");
  EXPECT_EQ(error_of(kMinimal, {"train.batch_size=2.5"}),
            "--set train.batch_size=2.5: train.batch_size: expected an integer, got '2.5'");
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=64"}),
            "--set model.hidden=64: model.hidden: expected a list such as [64, 64], got 64");
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=[64, -1]"}),
            "--set model.hidden=[64, -1]: model.hidden: element 1: must be 1 .. 1048576, got -1");
  EXPECT_EQ(error_of(kMinimal, {"model.activation=sigmoid"}),
            "--set model.activation=sigmoid: model.activation: must be one of tanh | relu, got 'sigmoid'");
  EXPECT_EQ(error_of(kMinimal, {"data.normalize=maybe"}),
            "--set data.normalize=maybe: data.normalize: expected true or false, got 'maybe'");
  EXPECT_EQ(error_of(kMinimal, {"optimizer.betas=[0.9]"}),
            "--set optimizer.betas=[0.9]: optimizer.betas: expected a list of 2 numbers such as [0.9, 0.999], got 1 elements");
  EXPECT_EQ(error_of(kMinimal, {"optimizer.lr=.inf"}),
            "--set optimizer.lr=.inf: optimizer.lr: expected a finite number, got '.inf'");
  EXPECT_EQ(error_of(kMinimal, {"run.dir=[a, b]"}), "--set run.dir=[a, b]: run.dir: expected a string, got a list");
}

TEST(Config, CrossKeyRules) {
  EXPECT_EQ(error_of(std::string(kMinimal) + "  batch_size: 100\n  micro_batch: 48\n"),
            "c.yaml:8:16: train.micro_batch (48) must divide train.batch_size (100)");
  EXPECT_EQ(error_of("run: {dir: r}\ndata: {train: t.h5}\n"),
            "c.yaml: train.epochs or train.max_steps must be given");
  EXPECT_EQ(error_of("data: {train: t.h5}\ntrain: {epochs: 1}\n"), "c.yaml: missing required key run.dir");
  EXPECT_EQ(error_of("run: {dir: r}\ntrain: {epochs: 1}\n"), "c.yaml: missing required key data.train");
  EXPECT_EQ(error_of(kMinimal, {"optimizer.name=sgd", "optimizer.nesterov=true"}),
            "--set optimizer.nesterov=true: optimizer.nesterov needs optimizer.momentum > 0");
}

TEST(Config, StructuralErrors) {
  EXPECT_EQ(error_of("run: [1, 2\n"),
            "c.yaml:2:1: YAML syntax error: end of sequence flow not found");
  EXPECT_EQ(error_of("- a\n- b\n"), "c.yaml: expected a mapping of sections (run, data, model, ...)");
  EXPECT_EQ(error_of(std::string(kMinimal) + "model: 3\n"),
            "c.yaml:7:1: 'model' is a section: expected a mapping of its keys, got 3");
  EXPECT_EQ(error_of(std::string(kMinimal) + "run:\n  seed: 2\n"), "c.yaml:7:1: duplicate key 'run'");
  EXPECT_EQ(error_of(kMinimal, {"optimizer.lr"}),
            "--set optimizer.lr: expected KEY=VALUE, e.g. --set optimizer.lr=0.01");
  EXPECT_EQ(error_of(kMinimal, {"optimiser.lr=1"}),
            "--set optimiser.lr=1: unknown key 'optimiser.lr'; did you mean 'optimizer.lr'?");
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=[1,"}).rfind("--set model.hidden=[1,: the value is not valid YAML", 0), 0u);
}

TEST(Config, ResolvedYamlRoundTrips) {
  const Config c = parse_config(kMinimal, "c.yaml", {"optimizer.lr=0.1234567890123", "clip.value=2"});
  const std::string yaml = to_yaml(c);
  const Config again = parse_config(yaml, "resolved.yaml");
  EXPECT_EQ(to_yaml(again), yaml);
  EXPECT_EQ(again.optimizer.lr, 0.1234567890123);
  EXPECT_NE(yaml.find("  micro_batch: 128\n"), std::string::npos) << yaml;
}

TEST(Config, EveryKeyHasDocumentationAndAnExample) {
  for (const auto& k : keys()) {
    EXPECT_FALSE(k.doc.empty()) << k.key;
    EXPECT_FALSE(k.type.empty()) << k.key;
    EXPECT_FALSE(k.range.empty()) << k.key;
  }
}

std::string readme_text() {
  std::ifstream in(std::string(MDN_TEST_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Config, ReadmeReferenceIsGeneratedFromTheTable) {
  const std::string readme = readme_text();
  const std::string begin = "<!-- config-reference: generated by `mdn keys --markdown` -->\n";
  const std::string end = "<!-- end of config-reference -->";
  const auto b = readme.find(begin);
  const auto e = readme.find(end);
  ASSERT_NE(b, std::string::npos) << "README has no config reference";
  ASSERT_NE(e, std::string::npos);
  EXPECT_EQ(readme.substr(b + begin.size(), e - b - begin.size()), keys_markdown())
      << "README's config reference is out of date: regenerate it with `build/mdn keys --markdown`";
}

TEST(Config, ReadmeExampleIsConfigsBishop) {
  // The README shows configs/bishop.yaml in flow style: the same resolved config, key by key.
  const std::string readme = readme_text();
  const std::string intro = "`configs/bishop.yaml` is a complete example, in flow style:\n\n```yaml\n";
  const auto b = readme.find(intro);
  ASSERT_NE(b, std::string::npos) << "README has no example config";
  const auto e = readme.find("```", b + intro.size());
  const Config shown = parse_config(readme.substr(b + intro.size(), e - b - intro.size()), "README.md");
  const Config file = load_config(std::string(MDN_TEST_SOURCE_DIR) + "/configs/bishop.yaml");
  EXPECT_EQ(to_yaml(shown), to_yaml(file));
}

template <class E>
void expect_names_round_trip(std::initializer_list<E> every_value) {
  std::set<std::string> seen;
  for (E e : every_value) {
    const std::string name = to_string(e);
    EXPECT_NE(name, "?") << "a value without a name";
    EXPECT_TRUE(seen.insert(name).second) << "two values named " << name;
    EXPECT_EQ(from_name<E>(name), e) << name;
    EXPECT_NE(names_of<E>().find(name), std::string::npos) << name;
  }
  EXPECT_EQ(from_name<E>("no such name"), std::nullopt);
}

TEST(Names, EveryEnumerationValueHasOneNameThatReadsBack) {
  // The one table per enumeration that the config, the checkpoint and messages share.
  expect_names_round_trip({Activation::tanh, Activation::relu});
  expect_names_round_trip({SigmaMode::softplus, SigmaMode::exp});
  expect_names_round_trip({OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::adamw});
  expect_names_round_trip({ScheduleKind::constant, ScheduleKind::cosine, ScheduleKind::step});
  expect_names_round_trip({Reduction::exact, Reduction::fast});
  expect_names_round_trip({Nonfinite::stop, Nonfinite::skip});
  // The config reads exactly these names.
  const Config c = parse_config("run: {dir: r}\ndata: {train: t.h5}\ntrain: {epochs: 1, reduction: fast, nonfinite: skip}\n"
                                "model: {activation: relu, sigma: exp}\noptimizer: {name: sgd, schedule: {name: step}}\n",
                                "names");
  EXPECT_EQ(c.train.reduction, Reduction::fast);
  EXPECT_EQ(c.train.nonfinite, Nonfinite::skip);
  EXPECT_EQ(c.model.activation, Activation::relu);
  EXPECT_EQ(c.model.sigma, SigmaMode::exp);
  EXPECT_EQ(c.optimizer.name, OptimizerKind::sgd);
  EXPECT_EQ(c.optimizer.schedule.kind, ScheduleKind::step);
}

TEST(Readme, SectionsThatTheSourcesCiteExist) {
  // Comments cite README sections by their titles, quoted after the word README and a comma;
  // each title must be a heading of the README.
  const std::string readme = readme_text();
  const std::regex cite(R"(README, \"([^\"]+)\")");
  namespace fs = std::filesystem;
  int cited = 0;
  for (const char* dir : {"src", "include", "tools", "tests"})
    for (const auto& e : fs::recursive_directory_iterator(fs::path(MDN_TEST_SOURCE_DIR) / dir)) {
      if (!e.is_regular_file()) continue;
      const std::string ext = e.path().extension().string();
      if (ext != ".cpp" && ext != ".hpp" && ext != ".py" && ext != ".sh" && ext != ".cmake") continue;
      std::ifstream in(e.path());
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string text = ss.str();
      for (std::sregex_iterator m(text.begin(), text.end(), cite), end; m != end; ++m) {
        ++cited;
        const std::string title = (*m)[1];
        EXPECT_TRUE(readme.find("\n## " + title + "\n") != std::string::npos ||
                    readme.find("\n### " + title + "\n") != std::string::npos)
            << e.path() << " cites README section \"" << title << "\", which the README does not have";
      }
    }
  EXPECT_GT(cited, 5);
}

}  // namespace
}  // namespace mdn
