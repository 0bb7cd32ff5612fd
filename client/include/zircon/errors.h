/* SPDX-License-Identifier: MIT */
/* Zircon status codes: Zircon's names and values, generated from one list. */
#ifndef ZIRCON_ERRORS_H_
#define ZIRCON_ERRORS_H_

/*
 * The one list of status codes. Every other table (names, messages, the
 * gRPC mapping, the CLI's exit messages) is generated from it, so adding a
 * code here is the whole change.
 *   X(NAME, value, "human-readable message")
 */
#define ZX_STATUS_LIST(X)                                                          \
    X(ZX_OK, 0, "success")                                                         \
    X(ZX_ERR_INTERNAL, -1, "internal error")                                       \
    X(ZX_ERR_NOT_SUPPORTED, -2, "operation not supported")                         \
    X(ZX_ERR_NO_RESOURCES, -3, "out of resources (a configured limit was reached)") \
    X(ZX_ERR_NO_MEMORY, -4, "out of memory (byte budget or hugepage pool)")        \
    X(ZX_ERR_INTERNAL_INTR_RETRY, -6, "interrupted, retry")                        \
    X(ZX_ERR_INVALID_ARGS, -10, "invalid arguments")                               \
    X(ZX_ERR_BAD_HANDLE, -11, "bad handle")                                        \
    X(ZX_ERR_WRONG_TYPE, -12, "wrong object type")                                 \
    X(ZX_ERR_BAD_SYSCALL, -13, "bad syscall")                                      \
    X(ZX_ERR_OUT_OF_RANGE, -14, "argument out of range")                           \
    X(ZX_ERR_BUFFER_TOO_SMALL, -15, "buffer too small")                            \
    X(ZX_ERR_BAD_STATE, -20, "bad state")                                          \
    X(ZX_ERR_TIMED_OUT, -21, "timed out")                                          \
    X(ZX_ERR_SHOULD_WAIT, -22, "should wait")                                      \
    X(ZX_ERR_CANCELED, -23, "canceled")                                            \
    X(ZX_ERR_PEER_CLOSED, -24, "peer closed")                                      \
    X(ZX_ERR_NOT_FOUND, -25, "not found")                                          \
    X(ZX_ERR_ALREADY_EXISTS, -26, "already exists")                                \
    X(ZX_ERR_ALREADY_BOUND, -27, "already bound")                                  \
    X(ZX_ERR_UNAVAILABLE, -28, "unavailable (server not reachable)")               \
    X(ZX_ERR_ACCESS_DENIED, -30, "access denied")                                  \
    X(ZX_ERR_IO, -40, "I/O error")                                                 \
    X(ZX_ERR_IO_REFUSED, -41, "I/O refused")                                       \
    X(ZX_ERR_IO_DATA_INTEGRITY, -42, "data integrity check failed")                \
    X(ZX_ERR_IO_DATA_LOSS, -43, "data loss")                                       \
    X(ZX_ERR_IO_NOT_PRESENT, -44, "I/O target not present")                        \
    X(ZX_ERR_IO_OVERRUN, -45, "I/O overrun")                                       \
    X(ZX_ERR_IO_MISSED_DEADLINE, -46, "I/O missed deadline")                       \
    X(ZX_ERR_IO_INVALID, -47, "invalid I/O")                                       \
    X(ZX_ERR_BAD_PATH, -50, "bad path")                                            \
    X(ZX_ERR_NOT_DIR, -51, "not a directory")                                      \
    X(ZX_ERR_NOT_FILE, -52, "not a file")                                          \
    X(ZX_ERR_FILE_BIG, -53, "file too big")                                        \
    X(ZX_ERR_NO_SPACE, -54, "no space")                                            \
    X(ZX_ERR_NOT_EMPTY, -55, "not empty")                                          \
    X(ZX_ERR_STOP, -60, "stop")                                                    \
    X(ZX_ERR_NEXT, -61, "next")                                                    \
    X(ZX_ERR_ASYNC, -62, "asynchronous")                                           \
    X(ZX_ERR_PROTOCOL_NOT_SUPPORTED, -70, "protocol not supported")                \
    X(ZX_ERR_ADDRESS_UNREACHABLE, -71, "address unreachable")                      \
    X(ZX_ERR_ADDRESS_IN_USE, -72, "address in use")                                \
    X(ZX_ERR_NOT_CONNECTED, -73, "not connected")                                  \
    X(ZX_ERR_CONNECTION_REFUSED, -74, "connection refused")                        \
    X(ZX_ERR_CONNECTION_RESET, -75, "connection reset")                            \
    X(ZX_ERR_CONNECTION_ABORTED, -76, "connection aborted")

/*
 * Zircon defines every status as a macro, and code written for Zircon tests them with #ifdef
 * and compares them in #if; so do we, with Zircon's values. A macro cannot be generated from
 * the list above: client/status.c checks at compile time that each row's value is its macro's.
 */
#define ZX_OK (0)
#define ZX_ERR_INTERNAL (-1)
#define ZX_ERR_NOT_SUPPORTED (-2)
#define ZX_ERR_NO_RESOURCES (-3)
#define ZX_ERR_NO_MEMORY (-4)
#define ZX_ERR_INTERNAL_INTR_RETRY (-6)
#define ZX_ERR_INVALID_ARGS (-10)
#define ZX_ERR_BAD_HANDLE (-11)
#define ZX_ERR_WRONG_TYPE (-12)
#define ZX_ERR_BAD_SYSCALL (-13)
#define ZX_ERR_OUT_OF_RANGE (-14)
#define ZX_ERR_BUFFER_TOO_SMALL (-15)
#define ZX_ERR_BAD_STATE (-20)
#define ZX_ERR_TIMED_OUT (-21)
#define ZX_ERR_SHOULD_WAIT (-22)
#define ZX_ERR_CANCELED (-23)
#define ZX_ERR_PEER_CLOSED (-24)
#define ZX_ERR_NOT_FOUND (-25)
#define ZX_ERR_ALREADY_EXISTS (-26)
#define ZX_ERR_ALREADY_BOUND (-27)
#define ZX_ERR_UNAVAILABLE (-28)
#define ZX_ERR_ACCESS_DENIED (-30)
#define ZX_ERR_IO (-40)
#define ZX_ERR_IO_REFUSED (-41)
#define ZX_ERR_IO_DATA_INTEGRITY (-42)
#define ZX_ERR_IO_DATA_LOSS (-43)
#define ZX_ERR_IO_NOT_PRESENT (-44)
#define ZX_ERR_IO_OVERRUN (-45)
#define ZX_ERR_IO_MISSED_DEADLINE (-46)
#define ZX_ERR_IO_INVALID (-47)
#define ZX_ERR_BAD_PATH (-50)
#define ZX_ERR_NOT_DIR (-51)
#define ZX_ERR_NOT_FILE (-52)
#define ZX_ERR_FILE_BIG (-53)
#define ZX_ERR_NO_SPACE (-54)
#define ZX_ERR_NOT_EMPTY (-55)
#define ZX_ERR_STOP (-60)
#define ZX_ERR_NEXT (-61)
#define ZX_ERR_ASYNC (-62)
#define ZX_ERR_PROTOCOL_NOT_SUPPORTED (-70)
#define ZX_ERR_ADDRESS_UNREACHABLE (-71)
#define ZX_ERR_ADDRESS_IN_USE (-72)
#define ZX_ERR_NOT_CONNECTED (-73)
#define ZX_ERR_CONNECTION_REFUSED (-74)
#define ZX_ERR_CONNECTION_RESET (-75)
#define ZX_ERR_CONNECTION_ABORTED (-76)

#endif /* ZIRCON_ERRORS_H_ */
