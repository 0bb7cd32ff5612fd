/* SPDX-License-Identifier: MIT */
/*
 * The SPSC ring's indices and futex wake-ups, as shm/ring.c implements them in block mode
 * (IOB_RING_WAIT_BLOCK), checked exhaustively by tests/models/check.sh.
 *
 * Mirrors:
 *   Producer   iob_ring_reserve's slow path (iob__ring_reserve_slow: publish, refresh the
 *              read index, SHOULD_WAIT), iob_ring_commit (batch countdown,
 *              iob__ring_producer_count), iob__ring_producer_publish (release store of
 *              write_index, seq_cst fence, load of consumer_sleeping, bump data_futex and
 *              FUTEX_WAKE), iob_ring_producer_wait / ring_producer_wait_for (publish, then
 *              look; seq = space_futex, producer_sleeping = 1, fence, look again,
 *              FUTEX_WAIT(space_futex, seq), producer_sleeping = 0, loop) and
 *              iob_ring_producer_close (publish, producer_closed = 1, bump and wake).
 *   Consumer   iob__ring_peek_slow (refresh the write index, publish the read index when
 *              out of data, PEER_CLOSED once closed and drained), iob_ring_release
 *              (iob__ring_consumer_count), iob__ring_consumer_publish (the mirror image),
 *              iob_ring_consumer_wait / ring_consumer_wait_for / ring_consumer_ready.
 *
 * Abstractions: positions count messages, not bytes (every record takes one slot of a
 * ring of C slots, so padding and record sizes are gone; their validation is the fuzzers'
 * job); the publication forced by a quarter of the capacity is left out (it only adds
 * publications); spinning before a sleep is a single look (more looks are interleavings
 * this already covers); ring_consumer_lag is left out (a bounded delay); FUTEX_WAIT is
 * "sleep unless the word changed" in one step and FUTEX_WAKE wakes the sleeper, with no
 * spurious wake-ups and no time-outs; Promela is sequentially consistent, which the
 * seq_cst fences give the code for the two store-then-load pairs that matter (index vs
 * sleeping flag), and BUG_NO_FENCE shows what their absence allows. Neither side closes
 * early and the indices are honest (lies are the fuzzers' job).
 *
 * Checked: no lost wake-up (a side asleep for good while the other has finished is an
 * invalid end state: both must end, the consumer with every message read, and with
 * PEER_CLOSED seen when the producer closed; a producer that only flushes and goes idle
 * must still get its last batch read); no overwrite of unread data (a message is intact from peek to release); no read
 * of unpublished data (peek finds the message written there); FIFO order.
 *
 * Mutations (check.sh expects spin to report an error for each):
 *   BUG_NO_FENCE       the producer's load of consumer_sleeping overtakes its store of
 *                      write_index (what x86's store buffer does without the fence)
 *   BUG_NO_RECHECK     the consumer sleeps without looking again after raising its flag
 *   BUG_EARLY_PUBLISH  the producer counts the commit (and may publish) before it writes
 *                      the message
 */

#define C 3   /* slots */
#define N 5   /* messages the producer sends */
#define PB 2  /* producer batch (iob_ring_options_t.batch) */
#define CB 2  /* consumer batch */

byte slot[C];            /* sequence number + 1 of the message in each slot; 0: none yet */
byte write_index;        /* ctrl->write_index */
byte read_index;         /* ctrl->read_index */
bit producer_closed;
bit will_close;          /* the producer ends with close, not only with a flush */
byte data_futex;
byte space_futex;
bit consumer_sleeping;
bit producer_sleeping;
bit c_asleep;            /* the consumer is inside FUTEX_WAIT(data_futex) */
bit p_asleep;            /* the producer is inside FUTEX_WAIT(space_futex) */
byte c_read_pos;         /* the consumer's local read_pos, visible to assertions */

/* FUTEX_WAIT(word, seq): sleeps only if the word still holds seq, then until woken. */
inline futex_wait(word, seq, asleep) {
    atomic {
        if
        :: word == seq -> asleep = 1
        :: else -> skip
        fi
    }
    asleep == 0
}

/* iob__ring_producer_publish */
inline p_publish() {
    p_batch_left = PB;
    if
    :: wp != p_published ->
#ifdef BUG_NO_FENCE
        sl = consumer_sleeping;
        write_index = wp;
#else
        write_index = wp;
        sl = consumer_sleeping;   /* after the seq_cst fence */
#endif
        p_published = wp;
        if
        :: sl -> data_futex++; c_asleep = 0
        :: else -> skip
        fi
    :: else -> skip
    fi
}

/* iob__ring_consumer_publish */
inline c_publish() {
    c_batch_left = CB;
    if
    :: c_read_pos != c_published ->
        read_index = c_read_pos;
        sl = producer_sleeping;   /* after the seq_cst fence */
        c_published = c_read_pos;
        if
        :: sl -> space_futex++; p_asleep = 0
        :: else -> skip
        fi
    :: else -> skip
    fi
}

proctype Producer() {
    byte wp = 0;
    byte p_published = 0;
    byte cached_read = 0;
    byte p_batch_left = PB;
    byte seq;
    byte r;
    bit sl;

    do
    :: wp == N -> break
    :: else ->
        /* iob_ring_reserve: room by the cached index, else the slow path. */
        do
        :: wp - cached_read < C -> break
        :: else ->
            p_publish();
            cached_read = read_index;
            if
            :: wp - cached_read < C -> skip
            :: else ->
                /* SHOULD_WAIT: iob_ring_producer_wait */
                p_publish();
                do
                :: r = read_index;
                    if
                    :: r != cached_read -> cached_read = r; break
                    :: else ->
                        seq = space_futex;
                        producer_sleeping = 1;
                        r = read_index;   /* after the seq_cst fence */
                        if
                        :: r != cached_read -> cached_read = r; producer_sleeping = 0; break
                        :: else ->
                            futex_wait(space_futex, seq, p_asleep);
                            producer_sleeping = 0
                        fi
                    fi
                od
            fi
        od;
        /* The slot is free: the consumer has released (and published) what was in it. */
        assert(wp < c_read_pos + C);
#ifdef BUG_EARLY_PUBLISH
        wp++;
        p_batch_left--;
        if
        :: p_batch_left == 0 -> p_publish()
        :: else -> skip
        fi;
        slot[(wp - 1) % C] = wp;
#else
        slot[wp % C] = wp + 1;
        wp++;
        p_batch_left--;
        if
        :: p_batch_left == 0 -> p_publish()
        :: else -> skip
        fi
#endif
    od;
    if
    :: !will_close ->
        /* iob_ring_producer_flush: the producer stays open and goes idle. */
        p_publish()
    :: else ->
        /* iob_ring_producer_close */
        p_publish();
        producer_closed = 1;
        data_futex++;
        c_asleep = 0
    fi
}

proctype Consumer() {
    byte c_published = 0;
    byte cached_write = 0;
    byte c_batch_left = CB;
    byte seq;
    byte w;
    bit sl;
    bit ready;

    do
    :: c_read_pos == N && !will_close -> break   /* all read; the producer stays open */
    :: else ->
        /* iob_ring_peek's slow path */
        if
        :: c_read_pos == cached_write ->
            w = write_index;
            assert(w >= cached_write && w - c_read_pos <= C);
            cached_write = w;
            if
            :: c_read_pos == cached_write ->
                c_publish();   /* out of data: hand back the space before anyone waits */
                if
                :: producer_closed ->
                    cached_write = write_index;
                    if
                    :: c_read_pos == cached_write -> break   /* PEER_CLOSED */
                    :: else -> skip
                    fi
                :: else ->
                    /* SHOULD_WAIT: iob_ring_consumer_wait */
                    c_publish();
                    do
                    :: w = write_index;
                        if
                        :: w != cached_write -> cached_write = w; break
                        :: else ->
                            if
                            :: producer_closed -> break
                            :: else ->
                                seq = data_futex;
                                consumer_sleeping = 1;
#ifdef BUG_NO_RECHECK
                                ready = 0;
#else
                                /* after the seq_cst fence: ring_consumer_ready */
                                w = write_index;
                                if
                                :: w != cached_write -> cached_write = w; ready = 1
                                :: else -> ready = producer_closed
                                fi;
#endif
                                if
                                :: ready -> consumer_sleeping = 0; break
                                :: else ->
                                    futex_wait(data_futex, seq, c_asleep);
                                    consumer_sleeping = 0
                                fi
                            fi
                        fi
                    od
                fi
            :: else -> skip
            fi
        :: else -> skip
        fi;
        if
        :: c_read_pos != cached_write ->
            /* peek: the message published there, written before its publication */
            assert(slot[c_read_pos % C] == c_read_pos + 1);
            /* ... used in place until the release: nobody may overwrite it meanwhile */
            assert(slot[c_read_pos % C] == c_read_pos + 1);
            c_read_pos++;
            c_batch_left--;
            if
            :: c_batch_left == 0 -> c_publish()
            :: else -> skip
            fi
        :: else -> skip
        fi
    od;
    assert(c_read_pos == N)
}

/* Whether the producer will close is decided before either side starts. */
init {
    if
    :: will_close = 1
    :: will_close = 0
    fi;
    atomic { run Producer(); run Consumer() }
}
