// A two-rank MPI job in which rank 1 fails to join a collective, for test_distributed: with `stall` it sleeps
// for longer than the collective timeout and then joins; with `exit` it leaves at once without finalising
// MPI. Rank 0 sums a value with a 1 s timeout. Rank 1 can also stand beside race-train as rank 0 (mpirun's
// MPMD form), which then waits for it in its own first collective. Built as race-train's main is: any
// error is reported by run_guarded and takes the whole job down through Communicator::abort.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/main_guard.h"
#include "train/communicator.h"

int main(int argc, char** argv) {
  std::unique_ptr<race::train::Communicator> comm;
  const int status = race::run_guarded([&] {
    if (argc != 2 || (std::string(argv[1]) != "stall" && std::string(argv[1]) != "exit"))
      throw race::UsageError("usage: stalled_rank stall|exit (under mpirun -np 2)");
    comm = race::train::connect_communicator();
    comm->set_timeout(1.0);
    if (comm->rank() == 1) {
      if (std::string(argv[1]) == "exit") std::_Exit(3);
      ::sleep(20);
    }
    std::vector<double> value = {1.0};
    comm->sum(value);
    return 0;
  });
  if (status != 0 && comm) comm->abort(status);
  return status;
}
