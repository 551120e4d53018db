// io_floor: the I/O floor a streaming tool cannot beat on this machine.
//
//   io_floor [--write-bytes N --out FILE] [--threads T] [--buffer-kib K] INPUT...
//
// Reads every input (a file, or every *.safetensors file under a directory,
// recursively) once, then writes N bytes to FILE (unlinked first, so it is a
// fresh file like a tool's output), without fsync. All I/O goes through reused
// buffers of K KiB (default 256), one per thread, touched before the clock
// starts. The default is the fastest size measured on this kind of VM: two
// threads issuing 8 MiB pwrites to one file contend in the kernel and took
// 2-6x longer (and varied far more) than 64-512 KiB pieces.
//
// T threads (default 1) each take one contiguous slice of the inputs (pread)
// and of the output (pwrite). T = 1 is the plain sequential floor. T = cores
// is the parallel floor: on VMs where fresh page-cache pages are expensive,
// copying into the page cache is CPU-bound in the kernel, and two writer
// threads finish several times sooner than one, so a parallel tool can beat
// the sequential floor.
//
// Prints one JSON object: {"read_bytes", "read_seconds", "write_bytes",
// "write_seconds", "seconds", "files", "threads"}.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kDefaultBufferKib = 256;

struct Input {
  std::string path;
  int fd = -1;
  uint64_t size = 0;
};

int Fail(const std::string& what, int error = errno) {
  std::fprintf(stderr, "io_floor: %s: %s\n", what.c_str(), std::strerror(error));
  return 1;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs fn(thread_idx, begin, end) on `threads` threads over 4 KiB-aligned
// slices of [0, total). Returns the first non-zero errno a slice returned.
int ForSlices(uint64_t total, unsigned threads,
              const std::function<int(unsigned, uint64_t, uint64_t)>& fn) {
  const uint64_t slice = (total / threads + 4095) / 4096 * 4096;
  std::vector<int> errors(threads, 0);
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    const uint64_t begin = std::min<uint64_t>(total, t * slice);
    const uint64_t end = t + 1 == threads ? total : std::min<uint64_t>(total, begin + slice);
    workers.emplace_back([&, t, begin, end] { errors[t] = fn(t, begin, end); });
  }
  for (std::thread& worker : workers) worker.join();
  for (int error : errors) {
    if (error != 0) return error;
  }
  return 0;
}

// pread (write = false) or pwrite of bytes [begin, end) of fd in buffer-sized
// pieces; returns 0 or an errno value.
int Transfer(bool write, int fd, uint64_t begin, uint64_t end, std::vector<char>& buffer) {
  for (uint64_t offset = begin; offset < end;) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(end - offset, buffer.size()));
    const off_t at = static_cast<off_t>(offset);
    const ssize_t n =
        write ? ::pwrite(fd, buffer.data(), len, at) : ::pread(fd, buffer.data(), len, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t write_bytes = 0;
  unsigned threads = 1;
  size_t buffer_bytes = kDefaultBufferKib << 10;
  std::string out_path;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--write-bytes" && i + 1 < argc) {
      write_bytes = std::stoull(argv[++i]);
    } else if (arg == "--threads" && i + 1 < argc) {
      threads = std::max(1u, static_cast<unsigned>(std::stoul(argv[++i])));
    } else if (arg == "--buffer-kib" && i + 1 < argc) {
      buffer_bytes = std::max<size_t>(4, std::stoul(argv[++i])) << 10;
    } else if (arg == "--out" && i + 1 < argc) {
      out_path = argv[++i];
    } else if (arg == "-h" || arg.starts_with("--")) {
      std::fprintf(stderr, "usage: io_floor [--write-bytes N --out FILE] [--threads T] [--buffer-kib K] INPUT...\n");
      return arg == "-h" || arg == "--help" ? 0 : 2;
    } else {
      args.push_back(arg);
    }
  }
  if (write_bytes > 0 && out_path.empty()) {
    std::fprintf(stderr, "io_floor: --write-bytes needs --out\n");
    return 2;
  }

  std::vector<std::string> paths;
  for (const std::string& arg : args) {
    std::error_code ec;
    if (!std::filesystem::is_directory(arg, ec)) {
      paths.push_back(arg);
      continue;
    }
    for (const auto& entry : std::filesystem::recursive_directory_iterator(arg, ec)) {
      if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
        paths.push_back(entry.path().string());
      }
    }
    if (ec) return Fail(arg, ec.value());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<Input> inputs;
  uint64_t read_bytes = 0;
  for (const std::string& path : paths) {
    Input in{path, ::open(path.c_str(), O_RDONLY | O_CLOEXEC), 0};
    if (in.fd < 0) return Fail("open " + path);
    const off_t size = ::lseek(in.fd, 0, SEEK_END);
    if (size < 0) return Fail("seek " + path);
    in.size = static_cast<uint64_t>(size);
    read_bytes += in.size;
    inputs.push_back(in);
  }
  std::vector<std::vector<char>> buffers(threads, std::vector<char>(buffer_bytes, 1));

  // Each thread reads its slice of the inputs laid end to end.
  const auto read_start = std::chrono::steady_clock::now();
  int error = ForSlices(read_bytes, threads, [&](unsigned t, uint64_t begin, uint64_t end) {
    uint64_t base = 0;
    for (const Input& in : inputs) {
      const uint64_t lo = std::max(begin, base), hi = std::min(end, base + in.size);
      if (lo < hi) {
        if (int e = Transfer(false, in.fd, lo - base, hi - base, buffers[t])) return e;
      }
      base += in.size;
    }
    return 0;
  });
  if (error != 0) return Fail("read", error);
  const double read_seconds = SecondsSince(read_start);
  for (const Input& in : inputs) ::close(in.fd);

  const auto write_start = std::chrono::steady_clock::now();
  if (write_bytes > 0) {
    ::unlink(out_path.c_str());
    const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Fail("open " + out_path);
    error = ForSlices(write_bytes, threads, [&](unsigned t, uint64_t begin, uint64_t end) {
      return Transfer(true, fd, begin, end, buffers[t]);
    });
    if (error != 0) return Fail("write " + out_path, error);
    if (::close(fd) != 0) return Fail("close " + out_path);
  }
  const double write_seconds = SecondsSince(write_start);

  std::printf(
      "{\"read_bytes\": %llu, \"read_seconds\": %.3f, \"write_bytes\": %llu, "
      "\"write_seconds\": %.3f, \"seconds\": %.3f, \"files\": %zu, \"threads\": %u}\n",
      static_cast<unsigned long long>(read_bytes), read_seconds,
      static_cast<unsigned long long>(write_bytes), write_seconds, read_seconds + write_seconds,
      inputs.size(), threads);
  return 0;
}
