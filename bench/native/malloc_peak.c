/* LD_PRELOAD shim that counts the bytes live in malloc (usable size) and their peak.
 *
 * Used by bench/anime_memory.py to see what an ONNX Runtime run really has alive, with the arena off, apart
 * from what an allocator keeps mapped. Exported: malloc_peak_live(), malloc_peak_peak(), malloc_peak_reset().
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Atomic long live_bytes, peak_bytes;

static void *counted(void *p) {
    if (p) {
        long now = atomic_fetch_add(&live_bytes, (long)malloc_usable_size(p)) + (long)malloc_usable_size(p);
        long seen = atomic_load(&peak_bytes);
        while (now > seen && !atomic_compare_exchange_weak(&peak_bytes, &seen, now)) {
        }
    }
    return p;
}

static void uncounted(void *p) {
    if (p) atomic_fetch_sub(&live_bytes, (long)malloc_usable_size(p));
}

void *malloc(size_t n) { return counted(__libc_malloc(n)); }
void *calloc(size_t a, size_t b) { return counted(__libc_calloc(a, b)); }
void *memalign(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
void *aligned_alloc(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
void free(void *p) {
    uncounted(p);
    __libc_free(p);
}
void *realloc(void *q, size_t n) {
    long before = q ? (long)malloc_usable_size(q) : 0;
    void *p = __libc_realloc(q, n);
    if (!p) return NULL;
    atomic_fetch_sub(&live_bytes, before);
    return counted(p);
}
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = __libc_memalign(a, n);
    if (!p) return 12; /* ENOMEM */
    *out = counted(p);
    return 0;
}
long malloc_peak_live(void) { return atomic_load(&live_bytes); }
long malloc_peak_peak(void) { return atomic_load(&peak_bytes); }
void malloc_peak_reset(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
