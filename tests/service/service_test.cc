// The daemons under systemd's Type=notify (packaging/systemd/*.service.in):
// hsid tells the service manager READY=1 only once its control socket
// accepts connections, so that units ordered after it (hsi-ifd@, hsi-cf@)
// never start against a socket that is not there yet; hsi-cf once it
// serves its structures at its address; both say STOPPING=1 when SIGTERM
// ends them. The test plays the service manager: a datagram socket named
// by $NOTIFY_SOCKET, as systemd's own (hsi/testing/service_manager.h).
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/testing/cf_process.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/program.h"
#include "hsi/testing/service_manager.h"

namespace hsi {
namespace {

using ::hsi::testing::Hsid;
using ::hsi::testing::ScopedEnv;
using ::hsi::testing::ServiceManager;
using ::testing::HasSubstr;

TEST(ServiceTest, HsidNotifiesReadyOnceItServesAndStoppingOnSigterm) {
  Hsid d;
  ServiceManager manager(d.dir() + "/notify");
  ASSERT_TRUE(manager.bound()) << "bind " << d.dir() << "/notify";
  ScopedEnv env("NOTIFY_SOCKET", d.dir() + "/notify");
  ASSERT_TRUE(d.Start()) << d.log();
  const std::string ready = manager.Next(absl::Seconds(10));
  std::printf("hsid told the service manager: %s\n", ready.c_str());
  EXPECT_THAT(ready, HasSubstr("READY=1")) << d.log();
  EXPECT_THAT(ready, HasSubstr(absl::StrCat("STATUS=serving ", d.socket(), ", 1 CHPIDs")));
  // Ready means serving: the socket answers (from hsid's pid).
  EXPECT_TRUE(d.Connectable());
  ASSERT_EQ(::kill(d.pid(), SIGTERM), 0);
  const std::string stopping = manager.Next(absl::Seconds(10));
  EXPECT_THAT(stopping, HasSubstr("STOPPING=1")) << d.log();
  const int status = d.Stop(0);  // reap (signal 0: it is exiting already)
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n" << d.log();
}

// Without $NOTIFY_SOCKET (started by hand, or Type=simple) nothing is sent
// and nothing is logged about it.
TEST(ServiceTest, HsidWithoutNotifySocketServesAndSaysNothingOfIt) {
  ::unsetenv("NOTIFY_SOCKET");
  Hsid d;
  ASSERT_TRUE(d.Start()) << d.log();
  EXPECT_TRUE(d.Connectable());
  EXPECT_THAT(d.log(), ::testing::Not(HasSubstr("sd_notify")));
}

// A $NOTIFY_SOCKET nobody listens on: hsid says so in its log and serves on.
TEST(ServiceTest, HsidServesOnWhenTheServiceManagerIsGone) {
  Hsid d;
  ScopedEnv env("NOTIFY_SOCKET", d.dir() + "/nobody-here");
  ASSERT_TRUE(d.Start()) << d.log();
  EXPECT_TRUE(d.Connectable());
  EXPECT_TRUE(testing::Eventually([&] { return d.log().find("sd_notify") != std::string::npos; }, absl::Seconds(10)))
      << d.log();
  std::printf("%s", d.log().c_str());
  EXPECT_THAT(d.log(), HasSubstr("READY=1"));
}

TEST(ServiceTest, HsiCfNotifiesReadyOnceItServesAndStoppingOnSigterm) {
  Hsid d;
  ASSERT_TRUE(d.Start()) << d.log();
  ServiceManager manager(d.dir() + "/notify");
  ASSERT_TRUE(manager.bound());
  std::unique_ptr<hsi::testing::CfProcess> cf;
  {
    ScopedEnv env("NOTIFY_SOCKET", d.dir() + "/notify");
    cf = std::make_unique<hsi::testing::CfProcess>(d, "[cf]\nlpar = \"CF01\"\nchpid = \"F0\"\n\n"
                                                       "[[structure]]\nname = \"LOCK1\"\ntype = \"lock\"\n"
                                                       "entries = 8\nlpars = [\"DB2A\"]\n");
  }
  ASSERT_TRUE(cf->ready()) << cf->log();
  const std::string ready = manager.Next(absl::Seconds(10));
  std::printf("hsi-cf told the service manager: %s\n", ready.c_str());
  EXPECT_THAT(ready, HasSubstr("READY=1")) << cf->log();
  EXPECT_THAT(ready, HasSubstr(absl::StrCat("STATUS=serving at ", cf->address().ToString())));
  ASSERT_EQ(::kill(cf->pid(), SIGTERM), 0);
  EXPECT_THAT(manager.Next(absl::Seconds(10)), HasSubstr("STOPPING=1")) << cf->log();
  const int status = cf->Kill(0);  // reap (signal 0: it is exiting already)
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n" << cf->log();
}

}  // namespace
}  // namespace hsi
