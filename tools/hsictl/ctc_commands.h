// hsictl's CTC and ISFC commands (issue 19): list, define and undefine CTC
// connections at hsid, and print an ISFC link's write plan (which side
// writes which device, and why). Kept beside hsictl.cc so that it stays thin.
#ifndef HSI_TOOLS_HSICTL_CTC_COMMANDS_H_
#define HSI_TOOLS_HSICTL_CTC_COMMANDS_H_

#include <string>
#include <vector>

#include "cli.h"

namespace hsi::hsictl {

// True for ctcs, define-ctc, undefine-ctc, isfc-plan.
bool IsCtcCommand(const std::string& cmd);
// Runs one of them (`pos` = the positional arguments, the command first);
// returns the exit status.
int RunCtcCommand(const hsi::tools::Args& args, const std::vector<std::string>& pos);

}  // namespace hsi::hsictl

#endif  // HSI_TOOLS_HSICTL_CTC_COMMANDS_H_
