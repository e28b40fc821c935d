// Data-parallel training over MPI: K processes started by `mpirun -np K` (on one machine or a hostfile
// of many) each train on every K-th record of the same seeded order, add their gradients and loss
// counts with MPI_Allreduce, and then take the same optimizer step, so their parameters stay identical
// and the run matches one process with K times the batch (up to the order of the float sums).
//
// A Communicator is that group of ranks as the training loop sees it. Built without MPI, or run
// without mpirun, it is one process (rank 0 of 1) whose reductions leave their input as it is, and
// MPI is never initialised: a plain `baichuan finetune` does not pay for it.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "train/train_model.h"

namespace baichuan::train {

// Whether this build can run data parallel (CMake found MPI: BAICHUAN_MPI).
bool built_with_mpi();

// The number of ranks mpirun launched this process among (OMPI_COMM_WORLD_SIZE, else PMIX_SIZE /
// PMI_SIZE); 1 when it was not started by mpirun.
int launched_world_size();

class Communicator {
 public:
  Communicator() = default;  // one process: rank 0 of 1
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator();  // MPI_Finalize when this object initialised MPI

  // Joins the job mpirun started when it started more than one rank (MPI_Init); otherwise one
  // process. Throws Error when mpirun started several ranks of a build without MPI (each would
  // train alone and they would overwrite each other's checkpoints).
  static std::unique_ptr<Communicator> join_launched_job();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // How many ranks of the job run on this machine (they share its cores).
  int ranks_on_this_machine() const { return local_size_; }
  // "rank 1 of 2" (for messages; "" for one process).
  std::string describe() const;

  // Element-wise sums over the ranks, in place: every rank ends with the same values.
  void sum(std::span<float> values) const;
  void sum(std::span<double> values) const;
  void sum(std::span<int64_t> values) const;
  double sum(double value) const;
  LossNorm sum(const LossNorm& counts) const;

  // Whether `value` is the same on every rank (a collective: every rank must call it).
  bool same_on_every_rank(uint64_t value) const;
  void barrier() const;

  // Prints "error: rank R of K: MESSAGE" and ends the whole job (MPI_Abort): the other ranks are
  // stopped by mpirun instead of waiting forever for this one. Only for size() > 1.
  [[noreturn]] void abort_job(const std::string& message) const;

  // When mpirun stops this rank (SIGTERM: another rank failed or died, or the job was interrupted),
  // print "error: rank R of K: " + `message` on stderr before exiting, so every rank says why it
  // ended. Only for size() > 1.
  void explain_stop(const std::string& message) const;

 private:
  int rank_ = 0, size_ = 1, local_size_ = 1;
  bool initialised_mpi_ = false;
};

// A 64-bit hash of the bytes of `values`, to check cheaply that every rank holds the same parameters.
uint64_t parameter_checksum(std::span<const float> values);

}  // namespace baichuan::train
