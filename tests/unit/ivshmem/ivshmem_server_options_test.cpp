// Flag parsing and shared-memory creation of tosec-ivshmem-server.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <filesystem>

#include "ivshmem_test_support.h"
#include "server_options.h"
#include "shm_backing.h"

namespace tosec::host {
namespace {

rpc::Result<ServerOptions> parse(const std::vector<std::string>& args) {
  static char prog[] = "tosec-ivshmem-server";
  std::vector<std::string> copy = args;  // getopt may permute argv
  std::vector<char*> argv{prog};
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  return parse_server_options(static_cast<int>(argv.size() - 1), argv.data());
}

void expect_parse_error(std::vector<std::string> args, const std::string& needle) {
  auto o = parse(args);
  ASSERT_FALSE(o.ok()) << "accepted: " << ::testing::PrintToString(args);
  EXPECT_NE(o.error().message.find(needle), std::string::npos) << o.error().message;
}

TEST(IvshmemServerOptions, DefaultsAreQemus) {
  auto o = parse({});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->socket_path, "/tmp/ivshmem_socket");
  EXPECT_EQ(o->shm_flag, ShmFlag::kPosixName);
  EXPECT_EQ(o->shm_arg, "ivshmem");
  EXPECT_EQ(o->shm_size, 4U << 20);
  EXPECT_EQ(o->vectors, 1U);
  EXPECT_FALSE(o->foreground);
  EXPECT_FALSE(o->verbose);
  EXPECT_EQ(o->pid_file, "/var/run/ivshmem-server.pid");
  EXPECT_EQ(o->id_policy, IdPolicy::kLowestFree);
  EXPECT_TRUE(o->warnings.empty());
}

TEST(IvshmemServerOptions, AllFlags) {
  auto o = parse({"-F", "-v", "-S", "/run/x.sock", "-M", "tosec-g0", "-l", "64K", "-n", "8", "-p",
                  "/run/x.pid", "-R"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->socket_path, "/run/x.sock");
  EXPECT_EQ(o->shm_flag, ShmFlag::kPosixName);
  EXPECT_EQ(o->shm_arg, "tosec-g0");
  EXPECT_EQ(o->shm_size, 64U << 10);
  EXPECT_EQ(o->vectors, 8U);
  EXPECT_TRUE(o->foreground);
  EXPECT_TRUE(o->verbose);
  EXPECT_EQ(o->pid_file, "/run/x.pid");
  EXPECT_TRUE(o->pid_file_given);
  EXPECT_EQ(o->id_policy, IdPolicy::kRoundRobin);
}

TEST(IvshmemServerOptions, LowercaseMIsDirectoryOrName) {
  auto o = parse({"-m", "/dev/hugepages"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->shm_flag, ShmFlag::kNameOrDirectory);
  EXPECT_EQ(o->shm_arg, "/dev/hugepages");
  o = parse({"-m", "x", "-M", "y"});  // the last one wins, as in QEMU
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->shm_flag, ShmFlag::kPosixName);
  EXPECT_EQ(o->shm_arg, "y");
}

TEST(IvshmemServerOptions, Help) {
  auto o = parse({"-h"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->help);
  EXPECT_NE(server_usage("srv").find("-m DIR|NAME"), std::string::npos);
}

TEST(IvshmemServerOptions, BadFlagsAreClearErrors) {
  expect_parse_error({"-x"}, "unknown option -x");
  expect_parse_error({"-S"}, "option -S needs an argument");
  expect_parse_error({"-n", "65"}, "too many vectors: 65 (max is 64");
  expect_parse_error({"-n", "two"}, "cannot parse vector count 'two'");
  expect_parse_error({"-n", "-1"}, "cannot parse");
  expect_parse_error({"-l", "0"}, "must not be 0");
  expect_parse_error({"-l", "4Q"}, "invalid size suffix");
  expect_parse_error({"-l", "lots"}, "invalid size 'lots'");
  expect_parse_error({"-v"}, "-v needs -F");
  expect_parse_error({"-F", "stray"}, "unexpected argument 'stray'");
}

TEST(IvshmemServerOptions, NonPowerOfTwoSizeWarns) {
  auto o = parse({"-l", "3M"});
  ASSERT_TRUE(o.ok());
  ASSERT_EQ(o->warnings.size(), 1U);
  EXPECT_NE(o->warnings[0].find("rounding up to 4194304"), std::string::npos) << o->warnings[0];
}

TEST(IvshmemServerOptions, ParseSize) {
  EXPECT_EQ(*parse_size("4096"), 4096U);
  EXPECT_EQ(*parse_size("1k"), 1024U);
  EXPECT_EQ(*parse_size("4M"), 4U << 20);
  EXPECT_EQ(*parse_size("4MB"), 4U << 20);
  EXPECT_EQ(*parse_size("2G"), std::uint64_t{2} << 30);
  EXPECT_EQ(*parse_size("1T"), std::uint64_t{1} << 40);
  EXPECT_EQ(*parse_size("512B"), 512U);
  EXPECT_FALSE(parse_size("").ok());
  EXPECT_FALSE(parse_size("M").ok());
  EXPECT_FALSE(parse_size("1.5M").ok());
  EXPECT_FALSE(parse_size("4MM").ok());
  EXPECT_EQ(parse_size("99999999999T").error().code, ERANGE);
}

TEST(ShmBacking, RoundsUpToPowerOfTwo) {
  EXPECT_EQ(round_up_pow2(1), 1U);
  EXPECT_EQ(round_up_pow2(4096), 4096U);
  EXPECT_EQ(round_up_pow2(3 << 20), 4U << 20);
  EXPECT_EQ(round_up_pow2(3000000), 4U << 20);
}

bool shm_exists(const std::string& name) { return test::path_exists("/dev/shm/" + name); }

TEST(ShmBacking, CreatedPosixObjectIsUnlinkedOnClose) {
  const std::string name = test::unique_name("tosec-ivs-test");
  {
    auto b = ShmBacking::create(ShmFlag::kPosixName, name, 3 << 20);
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_TRUE(b->created());
    EXPECT_EQ(b->size(), 4U << 20);
    EXPECT_TRUE(shm_exists(name));
    auto fd = b->take_fd();
    struct stat st {};
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_size, 4 << 20);
  }
  EXPECT_FALSE(shm_exists(name)) << "we created it, so we unlink it";
}

TEST(ShmBacking, ExistingPosixObjectIsKeptAndResized) {
  const std::string name = test::unique_name("tosec-ivs-test");
  rpc::UniqueFd pre(::shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600));
  ASSERT_TRUE(pre.valid());
  {
    auto b = ShmBacking::create(ShmFlag::kNameOrDirectory, "/" + name, 1 << 20);
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_FALSE(b->created());
    EXPECT_NE(b->description().find("existing"), std::string::npos);
  }
  EXPECT_TRUE(shm_exists(name)) << "someone else's object survives us";
  struct stat st {};
  ASSERT_EQ(::fstat(pre.get(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  ::shm_unlink(("/" + name).c_str());
}

TEST(ShmBacking, LowercaseMWithDirectoryCreatesAnonymousFile) {
  test::TempDir dir;
  auto b = ShmBacking::create(ShmFlag::kNameOrDirectory, dir.path(), 1 << 20);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_FALSE(b->created());
  EXPECT_EQ(b->description(), "file in " + dir.path());
  auto fd = b->take_fd();
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "the file is unlinked at once";
}

TEST(ShmBacking, BadNamesAreClearErrors) {
  auto b = ShmBacking::create(ShmFlag::kNameOrDirectory, "/no/such/dir", 4096);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("neither an existing directory nor a valid POSIX shm name"),
            std::string::npos)
      << b.error().message;
  EXPECT_FALSE(ShmBacking::create(ShmFlag::kPosixName, "/", 4096).ok());
  EXPECT_FALSE(ShmBacking::create(ShmFlag::kPosixName, "x", 0).ok());
}

}  // namespace
}  // namespace tosec::host
