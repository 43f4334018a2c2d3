// Isolation by policy and capability, admin operations, and config errors.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "config.h"
#include "hsi/testing/child.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsi/admin.h"
#include "hsi/nic.h"
#include "hsi/session.h"
#include "hsi/testing/hsid.h"
#include "hsi/testing/line_pipe.h"

namespace hsi {
namespace {

using ::hsi::testing::Child;
using ::hsi::testing::Hsid;
using ::hsi::testing::LinePipe;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPolicy[] = R"toml(
[hsid]
admin_uids = [0]

[[chpid]]
id = "F0"
subnet = "10.240.0.0/24"
lpars = ["payroll", "web"]

[[chpid]]
id = "F1"
mfs = "24K"
subnet = "10.241.0.0/24"
lpars = ["payroll"]

[[lpar]]
name = "payroll"
uids = [0, 1000]
addresses = { F0 = "10.240.0.10" }

[[lpar]]
name = "web"
uids = [0, 1001]
)toml";

absl::StatusOr<Session> Connect(const Hsid& d, const std::string& lpar) {
  SessionOptions o;
  o.socket_path = d.socket();
  o.lpar = lpar;
  return Session::Connect(std::move(o));
}

// Runs `body` in a child as uid/gid 1001 and returns what it reported.
std::string AsUid1001(const std::function<std::string()>& body) {
  LinePipe rep;
  Child c([&] {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(1001, 1001, 1001) != 0 || ::setresuid(1001, 1001, 1001) != 0) {
      rep.Write("setresuid failed");
      return 1;
    }
    rep.Write(body());
    return 0;
  });
  std::string line = rep.Read(absl::Seconds(30));
  c.Wait();
  return line;
}

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_SETUID) to run clients as other uids";
    ASSERT_TRUE(d_.Start()) << d_.log();
  }
  Hsid d_{kPolicy};
};

TEST_F(PolicyTest, UnauthorizedUidCannotClaimLparAndIsToldWhichPolicyRefused) {
  const std::string got = AsUid1001([&] { return Connect(d_, "payroll").status().ToString(); });
  EXPECT_THAT(got, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(got, HasSubstr("LPAR \"payroll\": uid 1001 (gid "));
  EXPECT_THAT(got, HasSubstr(") may not claim it (policy [[lpar]] name = \"payroll\""));
  // The policy's uid lists are not a non-admin's to read (issue 13).
  EXPECT_THAT(got, Not(HasSubstr("[0, 1000]")));
  EXPECT_THAT(got, HasSubstr("config " + d_.config_path()));
  EXPECT_THAT(d_.log(), HasSubstr("claim refused"));
}

TEST_F(PolicyTest, UidMayClaimItsLparButNotAttachToAChpidThatExcludesIt) {
  const std::string got = AsUid1001([&]() -> std::string {
    absl::StatusOr<Session> s = Connect(d_, "web");
    if (!s.ok()) return "claim: " + s.status().ToString();
    absl::StatusOr<Nic> ok = s->AttachNic(0xF0);
    if (!ok.ok()) return "F0: " + ok.status().ToString();
    return s->AttachNic(0xF1).status().ToString();
  });
  EXPECT_THAT(got, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(got, HasSubstr("CHPID F1: LPAR \"web\" is not in its allowed LPARs (config"));
  EXPECT_THAT(got, Not(HasSubstr("payroll")));
}

TEST_F(PolicyTest, NonAdminCannotRunAdminOperations) {
  const std::string got = AsUid1001([&]() -> std::string {
    absl::StatusOr<AdminClient> a = AdminClient::Connect(d_.socket());
    if (!a.ok()) return a.status().ToString();
    if (a->is_admin()) return "is_admin";
    ChpidSpec spec;
    spec.id = 0x0A;
    spec.subnet = Subnet::Parse("10.250.0.0/24").value();
    std::string out = a->DefineChpid(spec).ToString();
    out += " | " + a->ListLinks().status().ToString();
    out += " | " + a->SetNicState(Address::Parse("10.240.0.10").value(), false).ToString();
    out += " | " + a->UndefineChpid(0xF0).ToString();
    return out;
  });
  EXPECT_THAT(got, HasSubstr("admin operation define CHPID: uid 1001 is not an admin"));
  EXPECT_THAT(got, HasSubstr("admin operation list: uid 1001"));
  EXPECT_THAT(got, HasSubstr("admin operation set NIC state: uid 1001"));
  EXPECT_THAT(got, HasSubstr("admin operation undefine CHPID: uid 1001"));
  absl::StatusOr<AdminClient> root = AdminClient::Connect(d_.socket());
  ASSERT_TRUE(root.ok());
  absl::StatusOr<std::vector<ChpidInfo>> chpids = root->ListChpids();
  ASSERT_TRUE(chpids.ok()) << chpids.status();
  EXPECT_EQ(chpids->size(), 2u) << "a refused define must not define";
}

// Segments and doorbells travel only by SCM_RIGHTS: another uid can neither
// find them in the filesystem nor reach them through /proc.
TEST_F(PolicyTest, OtherUidCannotReachAPairsSegments) {
  absl::StatusOr<Session> s = Connect(d_, "payroll");
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<Nic> a = s->AttachNic(0xF0);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->address().ToString(), "10.240.0.10") << "the static address from the config";
  absl::StatusOr<Nic> b = s->AttachNic(0xF0);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(a->SendTo(b->address(), std::vector<uint8_t>(16), Wait::Block(absl::Now() + absl::Seconds(5))).ok());
  const pid_t me = ::getpid();
  const std::string got = AsUid1001([&]() -> std::string {
    std::string dir = absl::StrCat("/proc/", me, "/fd");
    if (DIR* dp = ::opendir(dir.c_str())) {
      ::closedir(dp);
      return "listed " + dir;
    }
    for (int fd = 0; fd < 256; ++fd) {
      std::string p = absl::StrCat(dir, "/", fd);
      int f = ::open(p.c_str(), O_RDONLY);
      if (f >= 0) {
        ::close(f);
        return "opened " + p;
      }
    }
    return "unreachable";
  });
  EXPECT_EQ(got, "unreachable");
  // Nothing of ours in /dev/shm.
  if (DIR* dp = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(dp)) EXPECT_EQ(std::string(e->d_name).find("hsi"), std::string::npos) << e->d_name;
    ::closedir(dp);
  }
}

TEST_F(PolicyTest, AdminDefinesListsSetsNicDownAndUndefines) {
  absl::StatusOr<AdminClient> admin = AdminClient::Connect(d_.socket());
  ASSERT_TRUE(admin.ok()) << admin.status();
  EXPECT_TRUE(admin->is_admin());
  ChpidSpec spec;
  spec.id = 0x0A;
  spec.mfs = 40960;
  spec.subnet = Subnet::Parse("10.250.0.0/24").value();
  spec.lpars = {"payroll"};
  ASSERT_TRUE(admin->DefineChpid(spec).ok());
  EXPECT_EQ(admin->DefineChpid(spec).code(), absl::StatusCode::kAlreadyExists);
  ChpidSpec overlap = spec;
  overlap.id = 0x0B;
  overlap.subnet = Subnet::Parse("10.250.0.0/16").value();
  absl::Status ov = admin->DefineChpid(overlap);
  EXPECT_THAT(ov.message(), HasSubstr("overlaps CHPID 0A")) << ov;
  absl::StatusOr<std::vector<ChpidInfo>> chpids = admin->ListChpids();
  ASSERT_TRUE(chpids.ok()) << chpids.status();
  ASSERT_EQ(chpids->size(), 3u);
  EXPECT_EQ((*chpids)[0].spec.id, 0x0Au);
  EXPECT_EQ((*chpids)[0].mtu, 32768u);

  absl::StatusOr<Session> s = Connect(d_, "payroll");
  ASSERT_TRUE(s.ok()) << s.status();
  std::optional<Nic> a(s->AttachNic(0x0A).value());
  std::optional<Nic> b(s->AttachNic(0x0A).value());
  EXPECT_EQ(a->info().mtu, 32768u);
  std::vector<uint8_t> frame(1000), buf(32768);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(a->SendTo(b->address(), frame, Wait::Block(absl::Now() + absl::Seconds(5))).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b->Receive(absl::MakeSpan(buf), Wait::Block(absl::Now() + absl::Seconds(5))).ok());
  absl::StatusOr<std::vector<LinkStats>> links = admin->ListLinks();
  ASSERT_TRUE(links.ok()) << links.status();
  ASSERT_EQ(links->size(), 1u);
  const LinkStats& l = (*links)[0];
  EXPECT_STREQ(LinkPhaseName(l.state), "ready");
  EXPECT_EQ(l.a, a->address());
  EXPECT_EQ(l.a_to_b.frames, 10u);
  EXPECT_EQ(l.a_to_b.bytes, 10000u);
  EXPECT_EQ(l.a_to_b.rx_frames, 10u);
  EXPECT_EQ(l.b_to_a.frames, 0u);
  absl::StatusOr<std::vector<NicListing>> nics = admin->ListNics();
  ASSERT_TRUE(nics.ok()) << nics.status();
  EXPECT_EQ(nics->size(), 2u);
  EXPECT_EQ((*nics)[0].lpar, "payroll");

  EXPECT_EQ(admin->UndefineChpid(0x0A).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(admin->SetNicState(b->address(), false).ok());
  absl::StatusOr<Received> r = b->Receive(absl::MakeSpan(buf), Wait::Block(absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("set down by an admin"));
  absl::Status st = a->SendTo(b->address(), frame, Wait::Block(absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  ASSERT_TRUE(admin->SetNicState(b->address(), true).ok());
  ASSERT_TRUE(a->SendTo(b->address(), frame, Wait::Block(absl::Now() + absl::Seconds(5))).ok()) << "new link after up";
  a.reset();
  b.reset();
  EXPECT_TRUE(admin->UndefineChpid(0x0A).ok());
}

// ---- config

TEST(ConfigTest, BuiltInDefaultIsOneChpidF0OpenToSelf) {
  absl::StatusOr<hsid::Config> c = hsid::LoadConfig("", 4242);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->chpids.size(), 1u);
  const hsid::ChpidConfig& f0 = c->chpids.at(0xF0);
  EXPECT_EQ(f0.mfs, 16384u);
  EXPECT_EQ(f0.mtu, 8192u);
  EXPECT_FALSE(f0.drop);
  const hsid::LparConfig* any = c->FindLpar("whatever");
  ASSERT_NE(any, nullptr);
  EXPECT_EQ(any->uids, std::vector<uint32_t>{4242});
  EXPECT_EQ(c->admin_uids, std::vector<uint32_t>{4242});
}

TEST(ConfigTest, ErrorsNameFileKeyAndLine) {
  auto err = [](const std::string& toml) {
    return hsid::ParseConfig(toml, "/etc/hsi/hsid.toml", 0).status().ToString();
  };
  EXPECT_THAT(err("[[chpid]]\nid = \"F0\"\nsubnet = \"10.0.0.0/24\"\nmfs = 20000\n"),
              HasSubstr("config /etc/hsi/hsid.toml: chpid[0].mfs: 20000 is not one of 16K, 24K, 40K, 64K (line 4)"));
  EXPECT_THAT(err("[[chpid]]\nid = \"G0\"\nsubnet = \"10.0.0.0/24\"\n"), HasSubstr("chpid[0].id: 'G0' is not a hex CHPID 00..FF"));
  EXPECT_THAT(err("[[chpid]]\nid = \"F0\"\nsubnet = \"10.0.0.1/24\"\n"), HasSubstr("host bits set"));
  EXPECT_THAT(err("[[chpid]]\nid = \"F0\"\nsubnet = \"10.0.0.0/24\"\nqueue_size = 5000\n"),
              HasSubstr("chpid[0].queue_size: ring capacity 5000 is not a power of two"));
  EXPECT_THAT(err("[[chpid]]\nid = \"F0\"\nsubnet = \"10.0.0.0/24\"\noverflow = \"spill\"\n"),
              HasSubstr("chpid[0].overflow: \"spill\" is not \"block\" or \"drop\""));
  EXPECT_THAT(err("[[chpid]]\nid = \"F0\"\nsubnet = \"10.0.0.0/24\"\nsubnett = 1\n"), HasSubstr("chpid[0].subnett: unknown key"));
  EXPECT_THAT(err("[[lpar]]\nname = \"a\"\nuids = [\"root\"]\n"), HasSubstr("lpar[0].uids: each entry must be"));
  EXPECT_THAT(err("[[chpid]]\nid = \"F0\"\nsubnet = \"10.0.0.0/24\"\n[[chpid]]\nid = \"F1\"\nsubnet = \"10.0.0.0/16\"\n"),
              HasSubstr("overlaps CHPID F0"));
  EXPECT_THAT(err("[[chpid]\n"), HasSubstr("TOML syntax error"));
  // Found by config_parser_fuzz: toml11 overflows its buffer on this.
  EXPECT_THAT(err("[[hcpidr]]\nids = '\xc8'\"\n"),
              HasSubstr("config /etc/hsi/hsid.toml: line 2: not valid UTF-8 (byte 0xc8)"));
  EXPECT_THAT(err("# ok\n\x01"), HasSubstr("line 2: control character 0x1"));
}

TEST(ConfigTest, HsidRejectsABadConfigAtStartWithExitCode2) {
  Hsid d("[[chpid]]\nid = \"F0\"\nsubnet = \"10.0.0.0/24\"\nmfs = \"17K\"\n");
  EXPECT_FALSE(d.Start());
  EXPECT_THAT(d.log(), HasSubstr(d.config_path() + ": chpid[0].mfs"));
  // Exit status: run it directly to see the code.
  Child c([&] {
    ::execl(::hsi::testing::HsidPath(), "hsid", "--socket", (d.dir() + "/x.sock").c_str(), "--config", d.config_path().c_str(),
            static_cast<char*>(nullptr));
    return 127;
  });
  EXPECT_EQ(c.Wait(), 2);
}


// hsid's own usage text (not absl's flag dump) and usage errors with exit 2,
// as the tools do.
TEST(CommandLineTest, HelpAndUsageErrors) {
  auto run = [](const std::string& args) {
    const std::string cmd = absl::StrCat("timeout 10 '", ::hsi::testing::HsidPath(), "' ", args, " 2>&1 </dev/null; echo \"exit=$?\"");
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r"); p != nullptr) {
      char buf[4096];
      for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
      ::pclose(p);
    }
    return out;
  };
  for (const char* h : {"--help", "-h", "--socket /tmp/x --help"}) {
    const std::string out = run(h);
    EXPECT_THAT(out, HasSubstr("Usage: hsid [--socket PATH] [--config FILE] [--verbose]")) << h;
    EXPECT_THAT(out, HasSubstr("--print_default_config")) << h;
    EXPECT_THAT(out, HasSubstr("Exit status:")) << h;
    EXPECT_THAT(out, HasSubstr("hsid(8)")) << h;
    EXPECT_THAT(out, ::testing::Not(HasSubstr("flagfile"))) << h;
    EXPECT_THAT(out, ::testing::EndsWith("exit=0\n")) << h;
  }
  const std::pair<const char*, const char*> errors[] = {
      {"--bogus", "hsid: unknown option '--bogus' (try 'hsid --help')"},
      {"--helpfull", "unknown option '--helpfull'"},
      {"--socket", "hsid: option --socket needs a value (PATH) (try 'hsid --help')"},
      {"--config", "option --config needs a value (FILE)"},
      {"--socket /tmp/x extra", "hsid: unexpected argument 'extra' (try 'hsid --help')"},
  };
  for (const auto& [args, message] : errors) {
    const std::string out = run(args);
    EXPECT_THAT(out, HasSubstr(message)) << args;
    EXPECT_THAT(out, ::testing::EndsWith("exit=2\n")) << args;
  }
}

}  // namespace
}  // namespace hsi
