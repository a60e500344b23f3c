#include "mdn/signals.hpp"

#include <csignal>
#include <utility>

#include "mdn/error.hpp"

namespace mdn {

namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int sig) { g_signal = sig; }

}  // namespace

void install_stop_handlers(const std::vector<std::string>& signals) {
  for (const std::string& name : signals) {
    int sig = 0;
    if (name == "USR1") sig = SIGUSR1;
    else if (name == "USR2") sig = SIGUSR2;
    else if (name == "TERM") sig = SIGTERM;
    else throw input_error("unknown signal '{}' (USR1, USR2 or TERM)", name);
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(sig, &sa, nullptr) != 0) throw run_error("cannot install a handler for SIG{}", name);
  }
}

void keep_stop_handlers(const std::vector<std::string>& signals) {
  for (const auto& [name, sig] : {std::pair<const char*, int>{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}}) {
    bool keep = false;
    for (const auto& s : signals) keep |= s == name;
    if (!keep) std::signal(sig, SIG_DFL);
  }
  install_stop_handlers(signals);
}

bool stop_signal_received() { return g_signal != 0; }

int stop_signal_number() { return g_signal; }

void forget_stop_signal() { g_signal = 0; }

}  // namespace mdn
