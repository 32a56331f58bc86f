// Child processes for race-bench: posix_spawn with a pipe on stdout (no shell, so no quoting issues).
#include "subprocess.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"

extern char** environ;

namespace race::bench {

namespace {

// Closes a file descriptor on scope exit, so that every early throw leaves no descriptor behind.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

}  // namespace

ChildResult run_child(const std::string& program, const std::vector<std::string>& arguments) {
  int fds[2];
  if (pipe(fds) != 0) fail("cannot create a pipe for {}: {}", program, std::strerror(errno));
  Fd read_end(fds[0]), write_end(fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, read_end.get());
  posix_spawn_file_actions_addclose(&actions, write_end.get());

  std::vector<std::string> args;
  args.push_back(program);
  args.insert(args.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) fail("cannot start {}: {}", program, std::strerror(spawned));
  // Our copy of the write end must be closed, or reading would never see end-of-file.
  write_end.reset();

  ChildResult result;
  char chunk[4096];
  for (;;) {
    const ssize_t n = read(read_end.get(), chunk, sizeof chunk);
    if (n > 0) {
      result.stdout_text.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      break;  // the child's exit status below still says what happened
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail("waiting for {} (pid {}): {}", program, pid, std::strerror(errno));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFSIGNALED(status))
    result.signal = WTERMSIG(status);
  else
    result.exit_status = WEXITSTATUS(status);
  return result;
}

std::string self_executable() {
  std::error_code ec;
  const auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) fail("/proc/self/exe: cannot resolve the running executable: {}", ec.message());
  return path.string();
}

}  // namespace race::bench
