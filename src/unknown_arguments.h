// Names a mistyped command or flag before CLI11 parses the command line.
//
// CLI11 checks required options before it looks for arguments it does not know, so
// `s2s translate --chekpoint m.pt hello` reports "--checkpoint is required" and `s2s frobnicate`
// reports "A subcommand is required": true, but not the mistake. This check runs first and names it.
#pragma once
#include <CLI/CLI.hpp>

namespace s2s {

// Throws CLI::ExtrasError (for App::exit) naming the first word that is neither a known command in
// the command's place nor a known flag of the command it follows. A token counts as a flag when it
// is `--name[=value]` or `-x...` with x a letter; nothing after `--` is looked at.
void reject_unknown_arguments(const CLI::App& app, int argc, const char* const* argv);

}  // namespace s2s
