// The generated XML against libvirt itself: its schema (virt-xml-validate) and its test driver
// (test:///default, in libvirt.so: no daemon). Within one process every connection to
// test:///default shares one state while any of them is open.
#include "tosec/provision/libvirt.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace tosec::provision {
namespace {

// The built-in defaults with a [vm] table: guests run in VMs.
cli::Config vm_defaults() {
  auto c = cli::parse_config("[vm]\n", "t.toml");
  EXPECT_TRUE(c.ok());
  return *c;
}

constexpr const char* kTestUri = "test:///default";
constexpr const char* kValidator = "/usr/bin/virt-xml-validate";

const char* const kChains = R"(
[vm]
[platform]
runtime_dir = "/run/t&'x"
[tovm]
workers = 2
cpus = "0"
[[guest]]
name = "web"
[[guest]]
name = "db"
[[svm]]
name = "ids"
engine = "ids"
[[svm]]
name = "waf"
engine = "waf"
[[chain]]
name = "c"
steps = [["ids", "waf"]]
[[policy]]
guest = "web"
chain = "c"
)";

cli::Config chains_config() {
  auto c = cli::parse_config(kChains, "/etc/tosec/chains.toml");
  EXPECT_TRUE(c.ok()) << c.error().message;
  return c.ok() ? *c : cli::default_config();
}

// Runs the action and captures what it printed.
struct Captured {
  int rc = -1;
  std::string out;
  std::string err;
};
Captured provision(const cli::Config& cfg, Action action) {
  Captured r;
  char* out = nullptr;
  char* err = nullptr;
  std::size_t out_n = 0;
  std::size_t err_n = 0;
  std::FILE* fo = ::open_memstream(&out, &out_n);
  std::FILE* fe = ::open_memstream(&err, &err_n);
  ProvisionOptions o;
  o.action = action;
  o.uri = kTestUri;
  r.rc = provision_command(cfg, o, fo, fe);
  std::fclose(fo);
  std::fclose(fe);
  r.out.assign(out, out_n);
  r.err.assign(err, err_n);
  std::free(out);
  std::free(err);
  return r;
}

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/tosec-provision-test.XXXXXX";
    path_ = ::mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int validate(const std::string& file) {
  const std::string cmd = std::string(kValidator) + " '" + file + "' domain >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ProvisionLibvirt, XmlPassesVirtXmlValidate) {
  if (::access(kValidator, X_OK) != 0) GTEST_SKIP() << kValidator << " not installed";
  TempDir dir;
  auto plan = plan_domains(chains_config());
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_EQ(plan->size(), 5U);                                     // tovm, ids, waf, web, db
  EXPECT_EQ((*plan)[0].vcpu_cpus, (std::vector<unsigned>{0, 0}));  // <cputune> is validated too
  for (const auto& d : *plan) {
    const std::string file = dir.path() + "/" + d.name + ".xml";
    std::ofstream(file) << domain_xml(d);
    EXPECT_EQ(validate(file), 0) << d.name << ":\n" << domain_xml(d);
  }
  // The validator does check: a device model libvirt does not know fails.
  std::string bad = domain_xml((*plan)[0]);
  const std::string model = "ivshmem-doorbell";
  bad.replace(bad.find(model), model.size(), "ivshmem-bogus");
  const std::string file = dir.path() + "/bad.xml";
  std::ofstream(file) << bad;
  EXPECT_NE(validate(file), 0);
}

TEST(ProvisionLibvirt, DefineListStartDestroyOnTheTestDriver) {
  auto watcher = Connection::open(kTestUri);  // keeps the shared test state alive
  ASSERT_TRUE(watcher.ok()) << watcher.error().message;
  auto before = watcher->list_all();
  ASSERT_TRUE(before.ok()) << before.error().message;
  EXPECT_FALSE(watcher->local_qemu());

  const cli::Config cfg = chains_config();
  auto plan = plan_domains(cfg);
  ASSERT_TRUE(plan.ok());

  Captured r = provision(cfg, Action::kDefine);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto listed = watcher->list_all();
  ASSERT_TRUE(listed.ok());
  for (const auto& d : *plan) {
    EXPECT_TRUE(std::find(listed->begin(), listed->end(), d.name) != listed->end()) << d.name;
    EXPECT_NE(r.out.find(d.name + " defined"), std::string::npos) << r.out;
  }
  // libvirt parsed what we meant: the doorbell device on our socket, the escaped path intact.
  auto xml = watcher->xml_of("tosec-tovm");
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  EXPECT_NE(xml->find("<model type='ivshmem-doorbell'/>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<server path='/run/t&amp;&apos;x/guests/web/inspect.sock'/>"),
            std::string::npos)
      << *xml;
  EXPECT_NE(xml->find("<uuid>" + (*plan)[0].uuid + "</uuid>"), std::string::npos);

  // Redefinition keeps the domain (stable UUID), start runs them all.
  r = provision(cfg, Action::kStart);
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const auto& d : *plan) {
    EXPECT_NE(r.out.find(d.name + " started"), std::string::npos) << r.out;
  }
  r = provision(cfg, Action::kStart);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("tosec-guest-web already running"), std::string::npos) << r.out;

  r = provision(cfg, Action::kDestroy);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.find("tosec: provision: tosec-guest-db destroyed"), 0U) << "guests go first:\n"
                                                                          << r.out;
  listed = watcher->list_all();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, *before) << "destroy left domains behind";

  r = provision(cfg, Action::kDestroy);  // idempotent
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("tosec-tovm is not defined"), std::string::npos) << r.out;
}

TEST(ProvisionLibvirt, ALibvirtErrorNamesTheDomain) {
  auto watcher = Connection::open(kTestUri);
  ASSERT_TRUE(watcher.ok()) << watcher.error().message;
  const cli::Config cfg = vm_defaults();
  auto plan = plan_domains(cfg);
  ASSERT_TRUE(plan.ok());
  // Someone else's domain already holds the guest's name (with another UUID).
  DomainSpec foreign = plan->back();
  foreign.uuid = stable_uuid("someone else");
  ASSERT_TRUE(watcher->define(foreign).ok());

  Captured r = provision(cfg, Action::kDefine);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("tosec: provision: domain tosec-guest-default: "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << "libvirt's own words: " << r.err;

  auto s = watcher->start("tosec-no-such-domain");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message.rfind("domain tosec-no-such-domain: ", 0), 0U) << s.error().message;

  ASSERT_TRUE(watcher->destroy(foreign.name).ok());
  EXPECT_EQ(provision(cfg, Action::kDestroy).rc, 0);
}

TEST(ProvisionLibvirt, UnreachableUriIsAnError) {
  auto c = Connection::open("test:///nonexistent/tosec-no-such-file.xml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("cannot connect to libvirt at test:///nonexistent"),
            std::string::npos)
      << c.error().message;
}

// The `tosec provision` command line (host/cli/src/main.cpp).
struct Cli {
  int rc = -1;
  std::string output;
};
Cli tosec(const std::string& args) {
  Cli c;
  const std::string cmd = std::string(TOSEC_BINARY) + " provision " + args + " 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return c;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) c.output.append(buf, n);
  const int status = ::pclose(p);
  c.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return c;
}

TEST(ProvisionCli, ActionsAndExitCodes) {
  TempDir dir;
  const std::string cfg = dir.path() + "/t.toml";
  std::ofstream(cfg) << kChains;
  Cli c = tosec("-c " + cfg);  // --dry-run is the default
  EXPECT_EQ(c.rc, 0) << c.output;
  EXPECT_NE(c.output.find("<!-- domain tosec-svm-waf -->\n<domain type='qemu'>"), std::string::npos)
      << c.output;
  c = tosec("-c " + cfg + " --dry-run --output " + dir.path() + "/xml");
  EXPECT_EQ(c.rc, 0) << c.output;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/xml/tosec-guest-db.xml")) << c.output;
  c = tosec("-c " + cfg + " --connect test:///default --define");
  EXPECT_EQ(c.rc, 0) << c.output;
  EXPECT_NE(c.output.find("tosec-guest-db defined"), std::string::npos) << c.output;
  c = tosec("-c " + cfg + " --define --destroy");
  EXPECT_EQ(c.rc, 2) << c.output;
  c = tosec("-c " + cfg + " --connect");
  EXPECT_EQ(c.rc, 2) << c.output;
  EXPECT_NE(c.output.find("--connect needs a value"), std::string::npos) << c.output;
  std::ofstream(cfg) << "[vm]\nroles = [\"nope\"]\n";
  c = tosec("-c " + cfg);
  EXPECT_EQ(c.rc, 2) << c.output;
  EXPECT_NE(c.output.find("vm.roles[0]"), std::string::npos) << c.output;
  c = tosec("--help");
  EXPECT_EQ(c.rc, 0);
  EXPECT_NE(c.output.find("Usage: tosec provision"), std::string::npos) << c.output;
}

}  // namespace
}  // namespace tosec::provision
