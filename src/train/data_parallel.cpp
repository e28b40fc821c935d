#include "train/data_parallel.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <type_traits>

#include "core/error.h"

#ifdef BAICHUAN_MPI
// The C API only: OpenMPI's (deprecated) C++ bindings would need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace baichuan::train {

namespace {

// The line the SIGTERM handler writes, formatted beforehand: a handler may only call async-signal-safe
// functions (write, _exit).
char g_stop_line[2048];
size_t g_stop_line_size = 0;

extern "C" void write_stop_line_and_exit(int) {
  if (g_stop_line_size > 0) {
    const ssize_t ignored = write(STDERR_FILENO, g_stop_line, g_stop_line_size);
    (void)ignored;
  }
  _exit(1);
}

int env_count(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return *end == '\0' && n > 0 && n < (1 << 24) ? static_cast<int>(n) : 0;
}

#ifdef BAICHUAN_MPI
// Throws Error naming the call when an MPI call did not succeed (the communicator returns errors
// instead of aborting, so the message reaches the user through the CLI's error line).
void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int size = 0;
  MPI_Error_string(code, text, &size);
  fail(call, " failed: ", std::string(text, static_cast<size_t>(size)),
       " (did another rank of the job fail? see its error above)");
}

template <typename T>
MPI_Datatype mpi_type_of() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, int64_t>) return MPI_INT64_T;
  else {
    static_assert(std::is_same_v<T, uint64_t>, "no MPI type for this element type");
    return MPI_UINT64_T;
  }
}

template <typename T>
void all_reduce_in_place(std::span<T> values, MPI_Op op) {
  const MPI_Datatype type = mpi_type_of<T>();
  // MPI counts are int: large buffers go in pieces of at most 2^30 elements.
  constexpr size_t kMaxCount = size_t{1} << 30;
  for (size_t i = 0; i < values.size(); i += kMaxCount) {
    const size_t n = std::min(kMaxCount, values.size() - i);
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data() + i, static_cast<int>(n), type, op, MPI_COMM_WORLD),
              "MPI_Allreduce");
  }
}
#endif

// Element-wise sums over the `ranks` ranks of the job, in place (nothing to add up with one).
template <typename T>
void sum_over_ranks(std::span<T> values, int ranks) {
#ifdef BAICHUAN_MPI
  if (ranks > 1) all_reduce_in_place(values, MPI_SUM);
#else
  (void)values, (void)ranks;
#endif
}

}  // namespace

bool built_with_mpi() {
#ifdef BAICHUAN_MPI
  return true;
#else
  return false;
#endif
}

int launched_world_size() {
  // OpenMPI's mpirun sets OMPI_COMM_WORLD_SIZE; MPICH's mpiexec (Hydra) and Slurm's PMI set PMI_SIZE.
  if (const int n = env_count("OMPI_COMM_WORLD_SIZE")) return n;
  if (const int n = env_count("PMI_SIZE")) return n;
  return 1;
}

std::unique_ptr<Communicator> Communicator::join_launched_job() {
  auto comm = std::make_unique<Communicator>();
  const int launched = launched_world_size();
  if (launched <= 1) return comm;
#ifdef BAICHUAN_MPI
  int provided = 0;
  // Only the main thread calls MPI; the thread pool's workers never do.
  check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  comm->initialised_mpi_ = true;
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &comm->size_), "MPI_Comm_size");
  MPI_Comm local;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local), "MPI_Comm_split_type");
  check_mpi(MPI_Comm_size(local, &comm->local_size_), "MPI_Comm_size");
  MPI_Comm_free(&local);
  return comm;
#else
  fail("mpirun started ", launched, " ranks, but this build of baichuan has no MPI (CMake did not find it): each "
       "rank would train alone and overwrite the others' checkpoints. Install libopenmpi-dev (scripts/setup.sh) "
       "and rebuild, or run without mpirun");
#endif
}

Communicator::~Communicator() {
#ifdef BAICHUAN_MPI
  if (initialised_mpi_) MPI_Finalize();
#endif
}

std::string Communicator::describe() const {
  return size_ > 1 ? cat("rank ", rank_, " of ", size_) : std::string();
}

void Communicator::sum(std::span<float> values) const { sum_over_ranks(values, size_); }
void Communicator::sum(std::span<double> values) const { sum_over_ranks(values, size_); }
void Communicator::sum(std::span<int64_t> values) const { sum_over_ranks(values, size_); }

double Communicator::sum(double value) const {
  sum(std::span<double>(&value, 1));
  return value;
}

LossNorm Communicator::sum(const LossNorm& counts) const {
  int64_t both[2] = {counts.ce_tokens, counts.z_rows};
  sum(std::span<int64_t>(both));
  return {both[0], both[1]};
}

bool Communicator::same_on_every_rank(uint64_t value) const {
  uint64_t low = value, high = value;
#ifdef BAICHUAN_MPI
  if (size_ > 1) {
    all_reduce_in_place(std::span<uint64_t>(&low, 1), MPI_MIN);
    all_reduce_in_place(std::span<uint64_t>(&high, 1), MPI_MAX);
  }
#endif
  return low == high;
}

void Communicator::barrier() const {
#ifdef BAICHUAN_MPI
  if (size_ > 1) check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

void Communicator::abort_job(const std::string& message) const {
  std::cerr << "error: " << describe() << ": " << message << "\n" << std::flush;
#ifdef BAICHUAN_MPI
  if (initialised_mpi_) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  std::_Exit(1);
}

void Communicator::explain_stop(const std::string& message) const {
  if (size_ == 1) return;
  const std::string line = "error: " + describe() + ": " + message + "\n";
  g_stop_line_size = std::min(line.size(), sizeof g_stop_line);
  std::memcpy(g_stop_line, line.data(), g_stop_line_size);
  struct sigaction action {};
  action.sa_handler = write_stop_line_and_exit;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
}

uint64_t parameter_checksum(std::span<const float> values) {
  // FNV-1a over 64-bit words (then the odd float): a few milliseconds for millions of parameters.
  uint64_t h = 1469598103934665603ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  const size_t n = values.size_bytes();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    h = (h ^ word) * 1099511628211ULL;
  }
  for (; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ULL;
  return h;
}

}  // namespace baichuan::train
