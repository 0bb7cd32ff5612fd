/* SPDX-License-Identifier: MIT */
/*
 * Handle values iobd and libiob agree on without asking each other.
 *
 * zx_vmar_root_self() is a pseudo-handle: every session holds it from the start and can
 * neither close nor lose it. The core knows it as a VMAR object (so a call that expects an
 * IOB or a shared region answers ZX_ERR_WRONG_TYPE for it, as Zircon does for a process's
 * root VMAR) and libiob passes it through unchanged. Its value is at or above
 * IOB_CORE_HANDLE_VALUE_LIMIT and has the low two bits clear, so no real handle can take it.
 */
#ifndef IOB_SHM_HANDLES_H_
#define IOB_SHM_HANDLES_H_

#include <zircon/rights.h>
#include <zircon/types.h>

#define IOB_VMAR_ROOT_HANDLE ((zx_handle_t)0xFFFFFFF0u)

/*
 * A process's root VMAR in Zircon: the VMAR default rights (the basic rights without WAIT)
 * plus what its mappings may use. No SIGNAL, SIGNAL_PEER, WAIT or property rights, so those
 * calls are ZX_ERR_ACCESS_DENIED on it.
 */
#define IOB_VMAR_ROOT_RIGHTS \
    ((ZX_RIGHTS_BASIC & ~ZX_RIGHT_WAIT) | ZX_RIGHT_READ | ZX_RIGHT_WRITE | ZX_RIGHT_EXECUTE)

#endif /* IOB_SHM_HANDLES_H_ */
