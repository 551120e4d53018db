// The alloy command line: one subcommand per file in cli/cmd_<verb>.*.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <new>

#include "cli/cmd_compare.h"
#include "cli/cmd_convert.h"
#include "cli/cmd_inspect.h"
#include "cli/cmd_lora.h"
#include "cli/cmd_merge.h"
#include "cli/cmd_moe.h"
#include "cli/cmd_tokenize.h"
#include "cli/cmd_upscale.h"
#include "cli/exit_codes.h"
#include "cli/memory_limit.h"

int main(int argc, char** argv) {
  using alloy::cli::ExitCode;
  // Past a file size limit (ulimit -f) the kernel sends SIGXFSZ, whose default
  // action kills the process with the temporary output in place; ignored, the
  // write fails with EFBIG, which is reported (exit 3) and cleaned up.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "alloy: merge, upscale, upcycle, convert, compare, inspect and tokenize large language model\n"
      "checkpoints and LoRA adapters.\n"
      "Docs: docs/ in the source tree (one guide per command)."};
  app.name("alloy");
  app.set_version_flag("--version", std::string("alloy ") + ALLOY_VERSION);
  app.require_subcommand(1);
  app.footer("Run 'alloy COMMAND --help' for a command's options and examples.");

  alloy::cli::InspectOptions inspect;
  alloy::cli::ConvertCmdOptions convert;
  alloy::cli::MergeCmdOptions merge;
  alloy::cli::UpscaleCmdOptions upscale;
  alloy::cli::CompareCmdOptions compare;
  alloy::cli::LoraCmdOptions lora;
  alloy::cli::MoeCmdOptions moe;
  compare.command = alloy::cli::ShellJoin(argc, argv);
  lora.command = compare.command;
  CLI::App* inspect_cmd = alloy::cli::SetupInspect(app, inspect);
  CLI::App* convert_cmd = alloy::cli::SetupConvert(app, convert);
  CLI::App* merge_cmd = alloy::cli::SetupMerge(app, merge);
  CLI::App* upscale_cmd = alloy::cli::SetupUpscale(app, upscale);
  CLI::App* compare_cmd = alloy::cli::SetupCompare(app, compare);
  const alloy::cli::LoraCommands lora_cmds = alloy::cli::SetupLora(app, lora);
  const alloy::cli::MoeCommands moe_cmds = alloy::cli::SetupMoe(app, moe);
  alloy::cli::TokenizeOptions tokenize;
  CLI::App* tokenize_cmd = alloy::cli::SetupTokenize(app, tokenize);

  // --memory-limit on every command (cli/memory_limit.h); one value, since one
  // command runs.
  std::string memory_limit;
  std::vector<CLI::App*> pending = app.get_subcommands({});
  while (!pending.empty()) {
    CLI::App* cmd = pending.back();
    pending.pop_back();
    cmd->add_option("--memory-limit", memory_limit,
                    "Fail cleanly (exit 3, no partial output) rather than be OOM-killed when "
                    "alloy's own allocations would pass SIZE, e.g. 8GiB, 512MiB or 16GB "
                    "(memory-mapped inputs do not count; at least 64MiB; 'none' for no limit)")
        ->envname("ALLOY_MEMORY_LIMIT")
        ->option_text("SIZE");
    for (CLI::App* sub : cmd->get_subcommands({})) pending.push_back(sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return alloy::cli::ToInt(ExitCode::kBadInput);
  }

  if (!memory_limit.empty()) {
    auto limit = alloy::cli::ParseMemoryLimit(memory_limit);
    if (!limit.ok()) return alloy::cli::ReportError(limit.status(), std::cerr);
    if (limit->has_value()) {
      const alloy::formats::Status st = alloy::cli::ApplyMemoryLimit(**limit);
      if (!st.ok()) return alloy::cli::ReportError(st, std::cerr);
    }
  }

  try {
    if (inspect_cmd->parsed()) return alloy::cli::RunInspect(inspect, std::cout, std::cerr);
    if (convert_cmd->parsed()) return alloy::cli::RunConvert(convert, std::cout, std::cerr);
    if (merge_cmd->parsed()) return alloy::cli::RunMerge(merge, std::cout, std::cerr);
    if (upscale_cmd->parsed()) return alloy::cli::RunUpscale(upscale, std::cout, std::cerr);
    if (compare_cmd->parsed()) return alloy::cli::RunCompare(compare, std::cout, std::cerr);
    if (tokenize_cmd->parsed()) return alloy::cli::RunTokenize(tokenize, std::cout, std::cerr);
    const int lora_code = alloy::cli::RunLora(lora_cmds, lora, std::cout, std::cerr);
    if (lora_code >= 0) return lora_code;
    const int moe_code = alloy::cli::RunMoeCommands(moe_cmds, moe, std::cout, std::cerr);
    if (moe_code >= 0) return moe_code;
  } catch (const std::bad_alloc&) {
    std::cerr << "alloy: error: " << alloy::cli::OutOfMemoryMessage() << "\n";
    return alloy::cli::ToInt(ExitCode::kIoFailure);
  }
  return alloy::cli::ToInt(ExitCode::kInternal);
}
