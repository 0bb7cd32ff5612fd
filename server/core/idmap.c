/* SPDX-License-Identifier: MIT */
/*
 * A small id -> pointer map for the core's tables (handles, sessions, mapping records).
 * Open addressing with linear probing and backward-shift deletion: no tombstones, so a
 * long-running server's churn of handles never degrades lookups. Key 0 marks a free slot,
 * which is why keys are never 0 (handle values, session and mapping ids all start at 1).
 */
#include <stdlib.h>
#include <string.h>

#include "server/core/iob_core_internal.h"

#define IOB__IDMAP_MIN_CAPACITY 16u

/* splitmix64's finalizer: handle values are scrambled already, ids are sequential. */
static size_t slot_of(uint64_t key, size_t capacity) {
    key ^= key >> 30;
    key *= UINT64_C(0xbf58476d1ce4e5b9);
    key ^= key >> 27;
    key *= UINT64_C(0x94d049bb133111eb);
    key ^= key >> 31;
    return (size_t)key & (capacity - 1);
}

void iob__idmap_init(iob__idmap_t* map) {
    memset(map, 0, sizeof *map);
}

void iob__idmap_fini(iob__idmap_t* map) {
    free(map->keys);
    free(map->values);
    memset(map, 0, sizeof *map);
}

void* iob__idmap_get(const iob__idmap_t* map, uint64_t key) {
    if (map->capacity == 0 || key == 0) {
        return NULL;
    }
    for (size_t i = slot_of(key, map->capacity);; i = (i + 1) & (map->capacity - 1)) {
        if (map->keys[i] == key) {
            return map->values[i];
        }
        if (map->keys[i] == 0) {
            return NULL;
        }
    }
}

static void insert_unchecked(iob__idmap_t* map, uint64_t key, void* value) {
    size_t i = slot_of(key, map->capacity);
    while (map->keys[i] != 0) {
        i = (i + 1) & (map->capacity - 1);
    }
    map->keys[i] = key;
    map->values[i] = value;
    map->count++;
}

static zx_status_t resize(iob__idmap_t* map, size_t capacity) {
    uint64_t* keys = calloc(capacity, sizeof *keys);
    void** values = calloc(capacity, sizeof *values);
    if (keys == NULL || values == NULL) {
        free(keys);
        free(values);
        return ZX_ERR_NO_MEMORY;
    }
    iob__idmap_t old = *map;
    map->keys = keys;
    map->values = values;
    map->capacity = capacity;
    map->count = 0;
    for (size_t i = 0; i < old.capacity; i++) {
        if (old.keys[i] != 0) {
            insert_unchecked(map, old.keys[i], old.values[i]);
        }
    }
    free(old.keys);
    free(old.values);
    return ZX_OK;
}

zx_status_t iob__idmap_reserve(iob__idmap_t* map, size_t extra) {
    if (extra > SIZE_MAX / 4 - map->count) {
        return ZX_ERR_NO_MEMORY;
    }
    size_t need = map->count + extra;
    /* Load factor at most 1/2 keeps probe runs short. */
    if (map->capacity >= IOB__IDMAP_MIN_CAPACITY && need <= map->capacity / 2) {
        return ZX_OK;
    }
    size_t capacity = map->capacity >= IOB__IDMAP_MIN_CAPACITY ? map->capacity
                                                                : IOB__IDMAP_MIN_CAPACITY;
    while (need > capacity / 2) {
        capacity *= 2;
    }
    return capacity == map->capacity ? ZX_OK : resize(map, capacity);
}

zx_status_t iob__idmap_put(iob__idmap_t* map, uint64_t key, void* value) {
    zx_status_t status = iob__idmap_reserve(map, 1);
    if (status != ZX_OK) {
        return status;
    }
    insert_unchecked(map, key, value);
    return ZX_OK;
}

void* iob__idmap_remove(iob__idmap_t* map, uint64_t key) {
    if (map->capacity == 0 || key == 0) {
        return NULL;
    }
    size_t mask = map->capacity - 1;
    size_t i = slot_of(key, map->capacity);
    while (map->keys[i] != key) {
        if (map->keys[i] == 0) {
            return NULL;
        }
        i = (i + 1) & mask;
    }
    void* value = map->values[i];
    /*
     * Backward shift: move later members of the probe run into the hole when their home
     * slot is not between the hole and their current slot (cyclically).
     */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; map->keys[j] != 0; j = (j + 1) & mask) {
        size_t home = slot_of(map->keys[j], map->capacity);
        bool stays = (hole <= j) ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            map->keys[hole] = map->keys[j];
            map->values[hole] = map->values[j];
            hole = j;
        }
    }
    map->keys[hole] = 0;
    map->values[hole] = NULL;
    map->count--;
    return value;
}
