// Domain planning and XML generation (pure: no libvirt).
#include "tosec/provision/domains.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "tosec/cli/platform.h"

namespace tosec::provision {
namespace {

// The built-in defaults with a [vm] table: guests run in VMs.
cli::Config vm_defaults() {
  auto c = cli::parse_config("[vm]\n", "t.toml");
  EXPECT_TRUE(c.ok());
  return *c;
}

cli::Config parse(const std::string& text) {
  auto c = cli::parse_config(text, "/etc/tosec/t.toml");
  EXPECT_TRUE(c.ok()) << c.error().message;
  return c.ok() ? *c : cli::default_config();
}

// web behind an ids chain, db not inspected.
const char* const kChains = R"(
[vm]
[platform]
runtime_dir = "/run/t"
[tovm]
workers = 2
[[guest]]
name = "web"
exclude = ["127.0.0.0/8", "port:53"]
[[guest]]
name = "db"
[[svm]]
name = "ids"
engine = "ids"
workers = 3
[[svm]]
name = "unused"
engine = "waf"
[[chain]]
name = "c"
steps = ["ids"]
[[policy]]
guest = "web"
chain = "c"
)";

const DomainSpec* find(const std::vector<DomainSpec>& v, const std::string& name) {
  auto it = std::find_if(v.begin(), v.end(), [&](const DomainSpec& d) { return d.name == name; });
  return it == v.end() ? nullptr : &*it;
}

std::vector<std::string> names(const std::vector<DomainSpec>& v) {
  std::vector<std::string> out;
  for (const auto& d : v) out.push_back(d.name);
  return out;
}

TEST(ProvisionPlan, DefaultConfigIsATovmAndOneGuest) {
  auto plan = plan_domains(vm_defaults());
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(names(*plan), (std::vector<std::string>{"tosec-tovm", "tosec-guest-default"}));
}

TEST(ProvisionPlan, TovmSvmsAndGuestsInStartOrderWithTheirRegions) {
  auto plan = plan_domains(parse(kChains));
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // The unused SVM gets no domain, as in process mode.
  EXPECT_EQ(names(*plan), (std::vector<std::string>{"tosec-tovm", "tosec-svm-ids",
                                                    "tosec-guest-web", "tosec-guest-db"}));
  const DomainSpec& tovm = (*plan)[0];
  ASSERT_EQ(tovm.shmem.size(), 3U);
  EXPECT_EQ(tovm.shmem[0].server, "/run/t/guests/web/ivshmem.sock");
  EXPECT_EQ(tovm.shmem[1].server, "/run/t/guests/web/inspect.sock");
  EXPECT_EQ(tovm.shmem[2].server, "/run/t/guests/db/ivshmem.sock");
  EXPECT_EQ(tovm.vcpus, 2U);
  EXPECT_NE(tovm.cmdline.find("tosec.shmem=guest:web@08,inspect:web@09,guest:db@0a"),
            std::string::npos)
      << tovm.cmdline;
  EXPECT_EQ(tovm.initrd, "/run/t/images/infra.initrd");

  const DomainSpec& ids = (*plan)[1];
  ASSERT_EQ(ids.shmem.size(), 1U);
  EXPECT_EQ(ids.shmem[0].server, cli::inspection_paths("/run/t", "web", "").ivshmem_socket);
  ASSERT_TRUE(ids.shmem[0].node.has_value());
  EXPECT_EQ(*ids.shmem[0].node, 1U);  // node 0 is the TOE
  EXPECT_EQ(ids.vcpus, 4U);           // the manager + 3 workers
  EXPECT_NE(ids.cmdline.find("tosec.shmem=inspect:web:1@08"), std::string::npos) << ids.cmdline;
  EXPECT_NE(ids.cmdline.find("tosec.engine=ids"), std::string::npos);

  const DomainSpec& web = (*plan)[2];
  ASSERT_EQ(web.shmem.size(), 1U);  // never the inspection region
  EXPECT_EQ(web.shmem[0].kind, "guest");
  EXPECT_EQ(web.initrd, "/run/t/images/guest.initrd");
  EXPECT_EQ(web.kernel, "/run/t/images/vmlinuz");
  EXPECT_EQ(web.console_log, "/run/t/logs/tosec-guest-web.console.log");
  EXPECT_NE(web.cmdline.find("tosec.exclude=127.0.0.0/8,port:53"), std::string::npos);
  EXPECT_NE(web.cmdline.find(" tosec.vectors=16 "), std::string::npos) << web.cmdline;
  EXPECT_TRUE(
      web.cmdline.starts_with("intel_iommu=on console=ttyS0 tosec.role=guest tosec.name=web "));
}

TEST(ProvisionPlan, SharedSvmAttachesEveryGuestRegionItInspects) {
  std::string text = kChains;
  text += "[[policy]]\nguest = \"db\"\nchain = \"c\"\n";
  auto plan = plan_domains(parse(text));
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const DomainSpec* ids = find(*plan, "tosec-svm-ids");
  ASSERT_NE(ids, nullptr);
  ASSERT_EQ(ids->shmem.size(), 2U);
  EXPECT_EQ(ids->shmem[0].guest, "web");
  EXPECT_EQ(ids->shmem[1].guest, "db");
  EXPECT_EQ(ids->shmem[1].slot, kFirstShmemSlot + 1);
  EXPECT_EQ(find(*plan, "tosec-tovm")->shmem.size(), 4U);
}

TEST(ProvisionPlan, RolesAndPrefixAndSizesComeFromTheVmTable) {
  std::string text = kChains;
  text.erase(text.find("[vm]\n"), 5);  // this test's own [vm] below
  text +=
      "[vm]\nroles = [\"guest\"]\nname_prefix = \"lab1-\"\nguest_memory_mib = 384\n"
      "guest_vcpus = 2\nimages_dir = \"img\"\n";
  auto plan = plan_domains(parse(text));
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(names(*plan), (std::vector<std::string>{"lab1-guest-web", "lab1-guest-db"}));
  EXPECT_EQ((*plan)[0].memory_mib, 384U);
  EXPECT_EQ((*plan)[0].vcpus, 2U);
  EXPECT_EQ((*plan)[0].kernel, "/etc/tosec/img/vmlinuz");  // relative to the config file
}

// [tovm] cpus pins the TOVM's vCPUs on the host, vCPU i on the i-th CPU round robin.
TEST(ProvisionPlan, TovmVcpusArePinnedToTheTovmCpus) {
  std::string text = kChains;
  text.replace(text.find("workers = 2\n"), 12, "workers = 3\ncpus = \"1,3\"\n");
  auto plan = plan_domains(parse(text));
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const DomainSpec* tovm = find(*plan, "tosec-tovm");
  ASSERT_NE(tovm, nullptr);
  EXPECT_EQ(tovm->vcpu_cpus, (std::vector<unsigned>{1, 3, 1}));
  const std::string x = domain_xml(*tovm);
  EXPECT_NE(x.find("<vcpu>3</vcpu>\n  <cputune>\n    <vcpupin vcpu='0' cpuset='1'/>\n"
                   "    <vcpupin vcpu='1' cpuset='3'/>\n    <vcpupin vcpu='2' cpuset='1'/>\n"
                   "  </cputune>\n"),
            std::string::npos)
      << x;
  // Without cpus nothing is pinned, and guests are never pinned by it.
  EXPECT_TRUE(find(*plan, "tosec-guest-web")->vcpu_cpus.empty());
  auto plain = plan_domains(parse(kChains));
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(find(*plain, "tosec-tovm")->vcpu_cpus.empty());
  EXPECT_EQ(domain_xml(*find(*plain, "tosec-tovm")).find("<cputune>"), std::string::npos);
}

TEST(ProvisionPlan, RegionSizesComeFromTheChannelGeometry) {
  auto cfg = parse(kChains);
  cfg.guests[1].channel.rx_chunks = 16384;  // 256 MiB of receive memory
  auto plan = plan_domains(cfg);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const DomainSpec* db = find(*plan, "tosec-guest-db");
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->shmem[0].size, cli::guest_region_size(cfg.guests[1].channel));
  EXPECT_GT(db->shmem[0].size, find(*plan, "tosec-guest-web")->shmem[0].size);
  EXPECT_EQ(find(*plan, "tosec-tovm")->shmem[1].size, cli::kInspectionRegionSize);
}

TEST(ProvisionPlan, TooManyRegionsForThePciBusNamesTheDomain) {
  cli::Config cfg = vm_defaults();
  cfg.guests.clear();
  for (int i = 0; i < 24; ++i) {
    cli::GuestConfig g;
    g.name = "g" + std::to_string(i);
    g.in_vm = true;
    cfg.guests.push_back(g);
  }
  auto plan = plan_domains(cfg);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().message.rfind("domain tosec-tovm: 24 shared-memory regions", 0), 0U)
      << plan.error().message;
  cfg.guests.pop_back();
  EXPECT_TRUE(plan_domains(cfg).ok());
  cfg.vm.roles = {"guest"};  // guests alone: one region each
  const cli::GuestConfig first = cfg.guests[0];
  cfg.guests.resize(40, first);
  for (std::size_t i = 0; i < cfg.guests.size(); ++i) cfg.guests[i].name = "g" + std::to_string(i);
  EXPECT_TRUE(plan_domains(cfg).ok());
}

TEST(ProvisionPlan, OverlongKernelCommandLineIsRefused) {
  cli::Config cfg = vm_defaults();
  for (int i = 0; i < 150; ++i) cfg.guests[0].exclude.push_back("192.168.100.100/32");
  auto plan = plan_domains(cfg);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message.find("domain tosec-guest-default: kernel command line"),
            std::string::npos)
      << plan.error().message;
}

TEST(ProvisionPlan, RelativeImagesDirIsRefused) {
  cli::Config cfg = vm_defaults();
  cfg.vm.images_dir = "images";
  auto plan = plan_domains(cfg);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message.find("vm.images_dir"), std::string::npos);
}

std::string server_vectors(const cli::GuestConfig& g) {
  const auto argv = cli::ivshmem_server_argv({"s", "t", ""}, g, cli::guest_paths("/r", g.name, ""));
  auto n = std::find(argv.begin(), argv.end(), "-n");
  if (n == argv.end() || n + 1 == argv.end()) return "no -n";
  return *(n + 1);
}

TEST(ProvisionPlan, DoorbellVectorsMatchTheIvshmemServer) {
  // QEMU rejects a server that sends more eventfds per peer than the device has vectors. With
  // guests in VMs ([vm] roles has "guest", the default) a guest region has one per lane.
  auto plan = plan_domains(parse(kChains));
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const cli::Config cfg = parse(kChains);
  for (const auto& d : *plan) {
    for (const auto& s : d.shmem) {
      const auto* g = cfg.find_guest(s.guest);
      ASSERT_NE(g, nullptr) << s.name;
      EXPECT_TRUE(g->in_vm);
      if (s.kind == "guest") {
        EXPECT_EQ(s.vectors, g->channel.lanes) << d.name << " " << s.name;
        EXPECT_EQ(server_vectors(*g), std::to_string(s.vectors)) << s.name;
      } else {
        EXPECT_EQ(s.vectors, cli::kInspectionDoorbellVectors) << d.name << " " << s.name;
      }
      EXPECT_NE(domain_xml(d).find("<msi vectors='" + std::to_string(s.vectors) + "'"),
                std::string::npos);
    }
  }
  // Process mode (no [vm] table): one vector, no agent lane, and no guest domain.
  cli::GuestConfig p;
  p.name = "p";
  EXPECT_EQ(server_vectors(p), "1");
  auto none = plan_domains(cli::default_config());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no [vm] table"), std::string::npos) << none.error().message;
}

TEST(ProvisionPlan, GuestsInVmsGetTheAgentLaneOnTheirToe) {
  const cli::Config vm = parse(kChains);
  const auto args = cli::tovm_guest_args(vm.guests[0], cli::guest_paths("/r", "web", ""));
  EXPECT_NE(std::find(args.begin(), args.end(), "--vm-agent"), args.end());
  // Only where guests are VMs: SVM and TOVM VMs with host guests, or no [vm] table at all.
  for (const char* text : {"[vm]\nroles = [\"tovm\", \"svm\"]\n", "[tovm]\nworkers = 1\n"}) {
    auto c = cli::parse_config(text, "t.toml");
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_FALSE(c->guests[0].in_vm) << text;
    const auto a = cli::tovm_guest_args(c->guests[0], cli::guest_paths("/r", "g", ""));
    EXPECT_EQ(std::find(a.begin(), a.end(), "--vm-agent"), a.end()) << text;
  }
  // The agent needs a lane of its own next to the processes'.
  auto one = cli::parse_config("[vm]\nroles = [\"guest\"]\n[[guest]]\nname = \"g\"\nlanes = 1\n",
                               "t.toml");
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.error().message.find("guest[0].lanes"), std::string::npos) << one.error().message;
}

TEST(ProvisionXml, GuestDomainHasTheDocumentedShape) {
  auto plan = plan_domains(parse(kChains));
  ASSERT_TRUE(plan.ok());
  const std::string x = domain_xml(*find(*plan, "tosec-guest-web"));
  for (const char* want :
       {"<domain type='qemu'>", "<name>tosec-guest-web</name>", "<memory unit='MiB'>256</memory>",
        "<vcpu>1</vcpu>", "<type arch='x86_64' machine='q35'>hvm</type>",
        "<kernel>/run/t/images/vmlinuz</kernel>", "<initrd>/run/t/images/guest.initrd</initrd>",
        "<cmdline>intel_iommu=on console=ttyS0 tosec.role=guest tosec.name=web "
        "tosec.shmem=guest:web@08",
        "<serial type='file'>",
        "<source path='/run/t/logs/tosec-guest-web.console.log' append='on'/>",
        "<shmem name='tosec-web'>", "<model type='ivshmem-doorbell'/>",
        "<server path='/run/t/guests/web/ivshmem.sock'/>", "<msi vectors='16' ioeventfd='on'/>",
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x08' function='0x0'/>",
        "<memballoon model='none'/>", "<controller type='usb' model='none'/>"}) {
    EXPECT_NE(x.find(want), std::string::npos) << want << "\n" << x;
  }
  EXPECT_EQ(x.find("<size"), std::string::npos) << "libvirt refuses <size> for ivshmem-doorbell";
  EXPECT_EQ(x.find("<interface"), std::string::npos) << "guests have no NIC";
  EXPECT_EQ(x.find("inspect.sock"), std::string::npos) << "guests never map the inspection region";
  EXPECT_EQ(x.find("<graphics"), std::string::npos);
}

TEST(ProvisionXml, EscapesEveryValue) {
  EXPECT_EQ(xml_escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
  EXPECT_EQ(xml_escape("plain/path_1.x"), "plain/path_1.x");
  EXPECT_EQ(xml_escape("a\x01"
                       "b\tc"),
            "a?b\tc");  // XML 1.0 cannot carry U+0001
  cli::Config bad = vm_defaults();
  bad.vm.images_dir = "/img/\x1b[31m";
  ASSERT_FALSE(plan_domains(bad).ok());
  EXPECT_NE(plan_domains(bad).error().message.find("vm.images_dir: control characters"),
            std::string::npos);
  cli::Config cfg = vm_defaults();
  cfg.platform.runtime_dir = "/run/a&b'c";
  cfg.vm.images_dir = "/img/<x>\"y\"";
  auto plan = plan_domains(cfg);
  ASSERT_TRUE(plan.ok());
  const std::string x = domain_xml((*plan)[1]);
  EXPECT_NE(x.find("<kernel>/img/&lt;x&gt;&quot;y&quot;/vmlinuz</kernel>"), std::string::npos) << x;
  EXPECT_NE(x.find("<server path='/run/a&amp;b&apos;c/guests/default/ivshmem.sock'/>"),
            std::string::npos)
      << x;
  EXPECT_EQ(x.find("a&b"), std::string::npos);
  EXPECT_EQ(x.find("<x>"), std::string::npos);
}

TEST(ProvisionXml, UuidsAreStableDistinctAndWellFormed) {
  const std::string a = stable_uuid("/run/tosec\ntosec-tovm");
  EXPECT_EQ(a, stable_uuid("/run/tosec\ntosec-tovm"));
  EXPECT_NE(a, stable_uuid("/run/other\ntosec-tovm"));
  EXPECT_NE(a, stable_uuid("/run/tosec\ntosec-guest-default"));
  ASSERT_EQ(a.size(), 36U);
  for (std::size_t i : {8U, 13U, 18U, 23U}) EXPECT_EQ(a[i], '-') << a;
  EXPECT_EQ(a[14], '8') << a;                                          // version 8
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos) << a;  // RFC variant
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i)
    seen.insert(stable_uuid("/run/tosec\ntosec-guest-g" + std::to_string(i)));
  EXPECT_EQ(seen.size(), 1000U);
}

TEST(ProvisionStart, MissingImagesAndSocketsNameTheDomain) {
  auto plan = plan_domains(parse(kChains));
  ASSERT_TRUE(plan.ok());
  const DomainSpec& web = *find(*plan, "tosec-guest-web");
  std::set<std::string> present;
  auto exists = [&](const std::string& p) { return present.contains(p); };
  auto s = check_start_prerequisites(web, exists);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("domain tosec-guest-web: image /run/t/images/vmlinuz", 0), 0U)
      << s.message();
  present = {web.kernel, web.initrd};
  s = check_start_prerequisites(web, exists);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("ivshmem server socket /run/t/guests/web/ivshmem.sock"),
            std::string::npos)
      << s.message();
  present.insert(web.shmem[0].server);
  EXPECT_TRUE(check_start_prerequisites(web, exists).ok());
}

// The [vm] table of the config file (docs/config.md).
TEST(ProvisionConfig, VmTableIsValidated) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"[vm]\nroles = [\"guest\", \"vm\"]\n", "t.toml:2:19: vm.roles[1]: must be one of"},
      {"[vm]\nroles = []\n", "vm.roles: expected a non-empty array"},
      {"[vm]\nguest_memory_mib = 8\n", "vm.guest_memory_mib: must be in [64, 1048576], got 8"},
      {"[vm]\nname_prefix = \"a b\"\n", "vm.name_prefix: must be at most 16"},
      {"[vm]\nimage_dir = \"/x\"\n", "vm.image_dir: unknown key (did you mean 'images_dir'?)"},
      {"[vm]\nimages_dir = \"\"\n", "vm.images_dir: must not be empty"},
  };
  for (const auto& c : cases) {
    auto r = cli::parse_config(c.text, "t.toml");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.error().message.find(c.error), std::string::npos)
        << c.text << " -> " << r.error().message;
  }
  auto ok = cli::parse_config("[vm]\nroles = [\"svm\"]\nname_prefix = \"\"\n", "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_TRUE(ok->vm.has_role("svm"));
  EXPECT_FALSE(ok->vm.has_role("guest"));
  EXPECT_EQ(ok->vm.name_prefix, "");
  const cli::Config d = cli::default_config();
  EXPECT_TRUE(d.vm.has_role("tovm") && d.vm.has_role("svm") && d.vm.has_role("guest"));
  EXPECT_FALSE(d.vm.present);  // no [vm] table: guests are processes
  EXPECT_FALSE(d.guests[0].in_vm);
}

}  // namespace
}  // namespace tosec::provision
