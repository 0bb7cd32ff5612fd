/* SPDX-License-Identifier: MIT */
/* iobctl top: the live view (top.c). argv[0] is "top". Returns iobctl's exit code. */
#ifndef IOB_CLIENT_IOBCTL_TOP_H_
#define IOB_CLIENT_IOBCTL_TOP_H_

int iobctl_top(int argc, char** argv);

#endif /* IOB_CLIENT_IOBCTL_TOP_H_ */
