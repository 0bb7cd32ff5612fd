/* SPDX-License-Identifier: MIT */
/*
 * iob_word_scribbler FD VALUE: a hostile client of a shared futex word. It maps the first
 * page of FD (inherited) and stores VALUE into its first word as fast as it can, until it
 * is killed or its parent dies. test_mediator runs it against the mediator's doorbell: a
 * store of the value the mediator read, landing right after someone's increment, hides
 * that wake-up.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc != 3) {
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) {
        return 1; /* the parent is gone already */
    }
    int fd = atoi(argv[1]);
    uint32_t value = (uint32_t)strtoul(argv[2], NULL, 10);
    void* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        return 1;
    }
    _Atomic uint32_t* word = p;
    for (;;) {
        atomic_store_explicit(word, value, memory_order_relaxed);
    }
}
