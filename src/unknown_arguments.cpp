#include "unknown_arguments.h"

#include <cctype>
#include <string>
#include <vector>

namespace s2s {
namespace {

bool looks_like_flag(const std::string& arg) {
  if (arg.size() > 2 && arg[0] == '-' && arg[1] == '-') return std::isalpha(static_cast<unsigned char>(arg[2]));
  return arg.size() > 1 && arg[0] == '-' && std::isalpha(static_cast<unsigned char>(arg[1]));
}

// `--beam=5` -> `--beam`; `-c5` (a short flag with its value attached) -> `-c`.
std::string flag_name(const std::string& arg) {
  if (arg[1] == '-') return arg.substr(0, arg.find('='));
  return arg.substr(0, 2);
}

std::string command_list(const CLI::App& app) {
  std::string names;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names += (names.empty() ? "" : ", ") + sub->get_name();
  return names;
}

}  // namespace

void reject_unknown_arguments(const CLI::App& app, int argc, const char* const* argv) {
  const CLI::App* command = &app;  // the app, until a command's name is seen
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") return;
    if (looks_like_flag(arg)) {
      if (command->get_option_no_throw(flag_name(arg)) == nullptr) {
        const std::string where = command == &app ? "s2s" : "s2s " + command->get_name();
        throw CLI::ExtrasError(where + ": unknown option " + flag_name(arg),
                               CLI::ExitCodes::ExtrasError);
      }
      continue;
    }
    if (command == &app) {
      // The first word that is not a flag is the command (the app's own options take no values).
      const auto named = app.get_subcommands([&](const CLI::App* sub) { return sub->check_name(arg); });
      if (named.empty())
        throw CLI::ExtrasError("s2s: unknown command '" + arg + "'; the commands are: " + command_list(app),
                               CLI::ExitCodes::ExtrasError);
      command = named.front();
    }
  }
}

}  // namespace s2s
