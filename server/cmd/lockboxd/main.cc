// lockboxd: parse the settings, build the server, wait for SIGTERM or
// SIGINT, drain. No rule lives here.
#include <curl/curl.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "server/cmd/lockboxd/server.h"
#include "server/cmd/lockboxd/settings.h"
#include "server/keys/pin_files.h"
#include "server/observe/log.h"

#ifdef LOCKBOX_TEST_BUILD
#include "server/cmd/lockboxd/testing_clock.h"
#endif

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "lockboxd: %s\n", message.c_str());
  return 2;
}

// `lockboxd migrate`: a step of its own (the chart's Job or init container),
// so that the owner's URL reaches no serving process. Parsed apart from the
// server's settings, which it does not need.
int Migrate(int argc, char** argv) {
  lockbox::MigrateSettings settings;
  CLI::App app{
      "lockboxd migrate: apply the schema migrations as the schema's owner, then grant the "
      "runtime role what lockboxd needs (and nothing it could rewrite history with). Run it "
      "before every version's replicas start; it is safe to run again.",
      "lockboxd migrate"};
  settings.Register(&app);
  CLI11_PARSE(app, argc, argv);
  if (absl::Status valid = settings.Validate(); !valid.ok()) {
    return Fail(std::string(valid.message()));
  }
  if (absl::Status migrated = lockbox::MigrateDatabase(settings); !migrated.ok()) {
    return Fail(std::string(migrated.message()));
  }
  return 0;
}

// `lockboxd install-pins`: the chart's init container lays a mounted
// Secret of PINs out as --pkcs11-pin-dir wants it (server/keys/pin_files.h).
int InstallPins(int argc, char** argv) {
  std::string from, to;
  CLI::App app{
      "lockboxd install-pins: copy <owner>.<token label>.pin files (a mounted Secret) into a "
      "PIN directory <to>/<owner>/<token label>.pin open to no one else",
      "lockboxd install-pins"};
  app.add_option("--from", from, "Directory of <owner>.<token label>.pin files")->required();
  app.add_option("--to", to, "The PIN directory to make (--pkcs11-pin-dir)")->required();
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<int> installed = lockbox::InstallPinFiles(from, to);
  if (!installed.ok()) return Fail(std::string(installed.status().message()));
  std::fprintf(stderr, "lockboxd: installed %d PIN file(s) in %s\n", *installed, to.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "migrate") return Migrate(argc - 1, argv + 1);
  if (argc > 1 && std::string(argv[1]) == "install-pins") return InstallPins(argc - 1, argv + 1);
  // Blocked before any thread starts, so that every thread inherits the
  // mask and the signals reach only the sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
#ifndef LOCKBOX_TEST_BUILD
  // Debian builds absl without NDEBUG, which leaves absl::Mutex's deadlock
  // detector on: a graph node for every mutex (every watch's) and a global
  // lock taken on each acquisition. The test build keeps it, as a check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif

  lockbox::Settings settings;
  CLI::App app{
      "lockboxd: the Lockbox control plane. Every setting is also read from the environment "
      "variable LOCKBOX_<SETTING> (e.g. LOCKBOX_DATABASE_URL) and from the --config file "
      "(TOML, keys named like the flags without dashes, e.g. db-pool-size = 8); a flag wins "
      "over the environment, which wins over the file, which wins over the default.",
      "lockboxd"};
  settings.Register(&app);
#ifdef LOCKBOX_TEST_BUILD
  // Only in the test build (lockboxd-testing): the released lockboxd has no
  // way to move its clock.
  std::string clock_offset_file;
  app.add_option("--testing-clock-offset-file", clock_offset_file,
                 "TESTS ONLY: add the number of seconds in this file to the clock");
#endif
  CLI11_PARSE(app, argc, argv);

  if (absl::Status valid = settings.Validate(); !valid.ok()) {
    return Fail(std::string(valid.message()));
  }
  lockbox::LogFormat format;
  lockbox::ParseLogFormat(settings.log_format, &format);
  lockbox::SetLogFormat(format);
  // Not one write(2) per call's line (docs/PERFORMANCE.md): lines are
  // gathered and written every 50 ms; warnings and errors at once; all of
  // them at exit.
  lockbox::BufferLogs(absl::Milliseconds(50));
  lockbox::ServerOptions options;
  if (absl::Status smtp = settings.LoadSmtp(&options.smtp); !smtp.ok()) {
    return Fail(std::string(smtp.message()));
  }
  if (settings.check_config) {
    std::fputs(lockbox::ConfigForDisplay(app).c_str(), stdout);
    return 0;
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
#ifdef LOCKBOX_TEST_BUILD
  std::unique_ptr<lockbox::FileOffsetClock> testing_clock;
  if (!clock_offset_file.empty()) {
    lockbox::Log("warn", "TESTING CLOCK: time is moved by the file's offset",
                 {{"file", clock_offset_file}});
    testing_clock = std::make_unique<lockbox::FileOffsetClock>(clock_offset_file);
    options.clock = testing_clock.get();
  }
#endif
  options.settings = settings;
  auto server = lockbox::Server::Create(std::move(options));
  if (!server.ok()) return Fail(std::string(server.status().message()));

  int sig = 0;
  sigwait(&signals, &sig);
  lockbox::Log("info", "draining", {{"signal", sig}, {"drain_seconds", settings.drain_seconds}});
  (*server)->Drain();
  return 0;
}
