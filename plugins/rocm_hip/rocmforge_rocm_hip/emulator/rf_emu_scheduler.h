// rocmforge emulator: GPU execution semantics on the CPU (the `emulator` platform, runtime_emulator.py).
//
// A launch runs the grid's blocks one after another on each of a few OS threads; a block's threads run as fibers
// on that OS thread, switched only where a GPU thread waits for others: __syncthreads (the block's barrier), a
// wave shuffle (an exchange among the RF_WAVE lanes of one wave), and its exit. Nothing runs concurrently within
// a block, so __shared__ memory can be one instance per OS thread (`static thread_local`), refilled with 0xff
// bytes before every block: reading what the block did not write gives NaN / -1, not a previous block's values.
// Between two barriers the block's threads run in ascending order in some intervals and descending in others
// (by block and interval parity), so a missing barrier shows up as a wrong result whichever side of it is late.
// Divergent barriers, shuffles that read a lane that is not there, and deadlock stop the launch with a message
// naming the kernel, the block and the threads, instead of hanging.
//
// A fiber's stack is a STACK-aligned region whose first page holds the Fiber itself, then a guard page, so the
// running fiber is found from the stack address alone (no thread-local state besides the kernels' shared memory).
// What the scheduler scans (each thread's state, its shuffle offer, its saved context) lives in arrays in the
// Block: fiber regions lie a power of two apart and would all compete for the same cache sets. For the same
// reason a fiber's page and stack top are offset by 64 bytes times its region number modulo 64 ("colour").
#pragma once

#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <type_traits>
#include <utility>

#if !defined(__x86_64__) || defined(RF_EMU_UCONTEXT)
#include <ucontext.h>
#define RF_EMU_USE_UCONTEXT 1
#endif

#ifndef RF_WAVE
#error "RF_WAVE (the wave size to emulate, 32 or 64) must be defined"
#endif

namespace rf_emu {

constexpr int MAX_THREADS = 1024;           // per block, as on every GPU the kernels target
constexpr int MAX_WORKERS = 64;             // OS threads of one launch
constexpr size_t STACK = size_t(256) << 10;  // per fiber, including its Fiber page and guard page
constexpr int COLOURS = 64;                  // a stack set is aligned to COLOURS * STACK

struct dim3 {
    unsigned x, y, z;
};

struct Site {  // a barrier or shuffle in the source: kernels are checked to wait at the same one
    const char* file;
    int line;
};
inline bool same_site(Site a, Site b) {
    return a.line == b.line && (a.file == b.file || strcmp(a.file, b.file) == 0);
}

enum State { READY, AT_BARRIER, AT_SHUFFLE, DONE };
enum SyncKind { SYNC, SYNC_OR, SYNC_AND, SYNC_COUNT };

#if defined(RF_EMU_USE_UCONTEXT)
struct Context {
    ucontext_t uc;
};
#else
struct Context {
    void* sp;
};
#endif

struct Block;

struct Fiber {  // in its stack region's first page, what the running thread reads about itself
    Block* block;
    dim3 thread_idx;
    int id, wave, lane;
};

struct Lane {  // the scheduler's view of one thread
    State state;
    int source;      // shuffle: the lane (of its wave) it reads
    int size;        // shuffle: bytes of the value
    Site site;       // where it waits
    uint64_t value;  // shuffle: the value it offers, then the one it receives
};

struct Wave {
    int live;     // lanes that have not exited
    int arrived;  // lanes waiting at a shuffle
};

struct Block {
    dim3 block_idx, block_dim, grid_dim;
    const char* kernel;
    long long index;  // linear block index
    Lane lane[MAX_THREADS];
    Context ctx[MAX_THREADS];
    Wave waves[MAX_THREADS / RF_WAVE];
    int n, live, exited, at_barrier, intervals;
    Site barrier_site;
    int barrier_kind, barrier_count, barrier_result;
    Context scheduler;
    void (*body)(const void*);  // the kernel called with its arguments
    const void* body_arg;
    bool failed;
    char message[2048];
};

inline uintptr_t colour(uintptr_t region) { return (region / STACK) % COLOURS * 64; }

inline Fiber* self() {
    const uintptr_t region = reinterpret_cast<uintptr_t>(__builtin_frame_address(0)) & ~(uintptr_t)(STACK - 1);
    return reinterpret_cast<Fiber*>(region + colour(region));
}

}  // namespace rf_emu

extern "C" __attribute__((visibility("hidden"), used, noreturn)) void rf_emu_fiber_main();

#if !defined(RF_EMU_USE_UCONTEXT)
// rf_emu_switch(save, to): store the callee-saved registers and stack pointer in *save, continue at `to`.
extern "C" __attribute__((visibility("hidden"))) void rf_emu_switch(void** save, void* to);
extern "C" __attribute__((visibility("hidden"))) void rf_emu_fiber_start();
asm(R"(
    .text
    .p2align 4
    .globl rf_emu_switch
    .hidden rf_emu_switch
    .type rf_emu_switch, @function
rf_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rf_emu_switch, .-rf_emu_switch

    .p2align 4
    .globl rf_emu_fiber_start
    .hidden rf_emu_fiber_start
    .type rf_emu_fiber_start, @function
rf_emu_fiber_start:
    andq $-16, %rsp
    call rf_emu_fiber_main
    ud2
    .size rf_emu_fiber_start, .-rf_emu_fiber_start
)");
#endif

namespace rf_emu {

inline void context_init(Context* c, char* lo, char* hi) {
#if defined(RF_EMU_USE_UCONTEXT)
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size_t(hi - lo);
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, rf_emu_fiber_main, 0);
#else
    (void)lo;
    void** sp = reinterpret_cast<void**>(hi) - 8;  // six saved registers, the return address, padding
    for (int i = 0; i < 6; ++i) sp[i] = nullptr;
    sp[6] = reinterpret_cast<void*>(&rf_emu_fiber_start);
    sp[7] = nullptr;
    c->sp = sp;
#endif
}

inline void context_switch(Context* from, Context* to) {
#if defined(RF_EMU_USE_UCONTEXT)
    swapcontext(&from->uc, &to->uc);
#else
    rf_emu_switch(&from->sp, to->sp);
#endif
}

// -- messages -------------------------------------------------------------------------------------------------
__attribute__((format(printf, 2, 3))) inline void fail(Block* b, const char* fmt, ...) {
    if (b->failed) return;
    b->failed = true;
    int n = snprintf(b->message, sizeof b->message, "kernel %s (grid (%u,%u,%u), block (%u,%u,%u)), block (%u,%u,%u): ",
                     b->kernel, b->grid_dim.x, b->grid_dim.y, b->grid_dim.z, b->block_dim.x, b->block_dim.y,
                     b->block_dim.z, b->block_idx.x, b->block_idx.y, b->block_idx.z);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && size_t(n) < sizeof b->message) vsnprintf(b->message + n, sizeof b->message - size_t(n), fmt, ap);
    va_end(ap);
}

inline const char* describe(const Lane* f, char* buf, size_t size) {
    switch (f->state) {
        case READY: snprintf(buf, size, "can run"); break;
        case DONE: snprintf(buf, size, "have exited"); break;
        case AT_BARRIER: snprintf(buf, size, "wait at __syncthreads (%s:%d)", f->site.file, f->site.line); break;
        case AT_SHUFFLE: snprintf(buf, size, "wait at a shuffle (%s:%d)", f->site.file, f->site.line); break;
    }
    return buf;
}

// "threads 0-31 wait at a shuffle (a.hip:12); threads 32-63 wait at __syncthreads (a.hip:20)"
inline void describe_threads(Block* b, char* out, size_t size) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < b->n;) {
        char what[512], next[512];
        describe(&b->lane[i], what, sizeof what);
        int j = i + 1;
        while (j < b->n && strcmp(describe(&b->lane[j], next, sizeof next), what) == 0) ++j;
        int w = j - i > 1 ? snprintf(out + used, size - used, "%sthreads %d-%d %s", used ? "; " : "", i, j - 1, what)
                          : snprintf(out + used, size - used, "%sthread %d %s", used ? "; " : "", i, what);
        if (w < 0 || size_t(w) >= size - used) return;
        used += size_t(w);
        i = j;
    }
}

// -- waiting ----------------------------------------------------------------------------------------------------
// Hands the OS thread to the next thread that can run, in the interval's order from this one (wrapping around),
// or back to run_block when none can (all done, failed, or deadlocked); returns when this thread is resumed.
inline void yield(Fiber* f) {
    Block* b = f->block;
    Context* to = &b->scheduler;
    if (!b->failed) {
        const int n = b->n, step = (b->index + b->intervals) & 1 ? n - 1 : 1;
        for (int k = 1, i = f->id; k <= n; ++k) {
            i += step;
            if (i >= n) i -= n;
            if (b->lane[i].state == READY) {
                to = &b->ctx[i];
                break;
            }
        }
    }
    if (to != &b->ctx[f->id]) context_switch(&b->ctx[f->id], to);
}

// Stops the block after fail(): nothing resumes this thread.
[[noreturn]] inline void abandon(Fiber* f) {
    context_switch(&f->block->ctx[f->id], &f->block->scheduler);
    __builtin_unreachable();
}

// Every live lane of the wave waits at a shuffle: hand each its source lane's value (or fail).
inline bool complete_shuffle(Block* b, int wave) {
    const int first = wave * RF_WAVE, end = first + RF_WAVE < b->n ? first + RF_WAVE : b->n;
    uint64_t got[RF_WAVE];
    for (int i = first; i < end; ++i) {
        const Lane& f = b->lane[i];
        if (f.state != AT_SHUFFLE) continue;
        const int s = first + f.source;
        if (s >= b->n) {
            fail(b, "lane %d of wave %d (thread %d) reads lane %d in a shuffle (%s:%d), but the block has only %d threads",
                 i - first, wave, i, f.source, f.site.file, f.site.line, b->n);
            return false;
        }
        const Lane& src = b->lane[s];
        if (src.state != AT_SHUFFLE) {
            fail(b, "lane %d of wave %d (thread %d) reads lane %d in a shuffle (%s:%d), but that thread has exited",
                 i - first, wave, i, f.source, f.site.file, f.site.line);
            return false;
        }
        if (!same_site(src.site, f.site) || src.size != f.size) {
            fail(b, "lane %d of wave %d (thread %d) reads lane %d in a shuffle (%s:%d, %d bytes), but that lane is at "
                 "another shuffle (%s:%d, %d bytes)", i - first, wave, i, f.source, f.site.file, f.site.line, f.size,
                 src.site.file, src.site.line, src.size);
            return false;
        }
        got[i - first] = src.value;
    }
    for (int i = first; i < end; ++i) {
        Lane& f = b->lane[i];
        if (f.state != AT_SHUFFLE) continue;
        f.value = got[i - first];
        f.state = READY;
    }
    b->waves[wave].arrived = 0;
    return true;
}

// The exchange under every shuffle: offer `value`, receive lane `source`'s (source is a lane of this wave).
inline uint64_t exchange(Site site, uint64_t value, int size, int source) {
    Fiber* f = self();
    Block* b = f->block;
    Wave& w = b->waves[f->wave];
    Lane& me = b->lane[f->id];
    me.site = site;
    me.value = value;
    me.size = size;
    me.source = source;
    me.state = AT_SHUFFLE;
    if (++w.arrived == w.live) {
        if (!complete_shuffle(b, f->wave)) abandon(f);
    } else {
        yield(f);
    }
    return me.value;
}

inline int sync_threads(Site site, int predicate, SyncKind kind) {
    Fiber* f = self();
    Block* b = f->block;
    if (b->exited) {
        fail(b, "thread %d waits at __syncthreads (%s:%d), but %d threads of the block have exited and will never "
             "arrive", f->id, site.file, site.line, b->exited);
        abandon(f);
    }
    if (b->at_barrier == 0) {
        b->barrier_site = site;
        b->barrier_kind = kind;
        b->barrier_count = 0;
    } else if (!same_site(site, b->barrier_site) || kind != b->barrier_kind) {
        fail(b, "threads wait at different barriers: thread %d at %s:%d while %d threads wait at %s:%d", f->id,
             site.file, site.line, b->at_barrier, b->barrier_site.file, b->barrier_site.line);
        abandon(f);
    }
    b->barrier_count += predicate != 0;
    if (++b->at_barrier == b->n) {  // the last to arrive lets everyone go on
        b->barrier_result = b->barrier_count;
        b->at_barrier = 0;
        b->intervals++;
        for (int i = 0; i < b->n; ++i)
            if (b->lane[i].state == AT_BARRIER) b->lane[i].state = READY;
    } else {
        b->lane[f->id].state = AT_BARRIER;
        b->lane[f->id].site = site;
        yield(f);
    }
    const int c = b->barrier_result;  // stays until everyone has passed the next barrier
    return kind == SYNC_OR ? c > 0 : kind == SYNC_AND ? c == b->n : kind == SYNC_COUNT ? c : 0;
}

[[noreturn]] inline void exit_thread(Fiber* f) {
    Block* b = f->block;
    Wave& w = b->waves[f->wave];
    b->lane[f->id].state = DONE;
    b->live--;
    b->exited++;
    w.live--;
    if (b->at_barrier > 0) {
        fail(b, "thread %d exited while %d threads wait for it at __syncthreads (%s:%d)", f->id, b->at_barrier,
             b->barrier_site.file, b->barrier_site.line);
    } else if (w.arrived > 0 && w.arrived == w.live) {
        complete_shuffle(b, f->wave);
    }
    yield(f);
    __builtin_unreachable();
}

// -- fiber stacks -----------------------------------------------------------------------------------------------
// One set of MAX_THREADS fiber regions per OS thread of a launch, made once per process by rf_emu_stacks (the
// runtime passes them to every unit: separate sets per unit would exhaust the process's memory mappings, two per
// guard page).
static_assert(sizeof(Fiber) + (COLOURS - 1) * 64 <= 4096, "a Fiber, coloured, fits in its region's first page");

// -- shared memory ----------------------------------------------------------------------------------------------
// This unit's thread-local storage is exactly the kernels' __shared__ variables (and this anchor): the calling
// thread's block of it, found through the module's PT_TLS segment.
static thread_local char tls_anchor;

struct TlsBlock {
    uintptr_t code;  // an address inside this module
    void* data;
    size_t size;
};

inline int find_tls(struct dl_phdr_info* info, size_t, void* arg) {
    TlsBlock* t = static_cast<TlsBlock*>(arg);
    bool mine = false;
    size_t tls_size = 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type == PT_LOAD && t->code - info->dlpi_addr - ph.p_vaddr < ph.p_memsz) mine = true;
        if (ph.p_type == PT_TLS) tls_size = ph.p_memsz;
    }
    if (!mine) return 0;
    t->data = info->dlpi_tls_data;
    t->size = t->data ? tls_size : 0;
    return 1;
}

inline TlsBlock shared_memory() {
    *static_cast<volatile char*>(&tls_anchor) = 0;  // allocates this thread's block if it has none yet
    TlsBlock t{reinterpret_cast<uintptr_t>(&find_tls), nullptr, 0};
    dl_iterate_phdr(find_tls, &t);
    return t;
}

// -- running a block --------------------------------------------------------------------------------------------
inline bool run_block(Block* b, char* stacks, const TlsBlock& shared) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const unsigned bx = b->block_dim.x, by = b->block_dim.y;
    b->live = b->n;
    b->exited = b->at_barrier = b->intervals = 0;
    b->failed = false;
    for (int w = 0; w * RF_WAVE < b->n; ++w) {
        b->waves[w].live = b->n - w * RF_WAVE < RF_WAVE ? b->n - w * RF_WAVE : RF_WAVE;
        b->waves[w].arrived = 0;
    }
    for (int i = 0; i < b->n; ++i) {
        char* region = stacks + size_t(i) * STACK;
        const uintptr_t c = colour(reinterpret_cast<uintptr_t>(region));
        Fiber* f = reinterpret_cast<Fiber*>(region + c);
        f->block = b;
        f->thread_idx = dim3{unsigned(i) % bx, unsigned(i) / bx % by, unsigned(i) / (bx * by)};
        f->id = i;
        f->wave = i / RF_WAVE;
        f->lane = i % RF_WAVE;
        b->lane[i].state = READY;
        context_init(&b->ctx[i], region + 2 * page, region + STACK - c);
    }
    if (shared.data) memset(shared.data, 0xff, shared.size);
    // The first thread of the order runs; the threads hand over among themselves and come back here when none
    // can go on.
    context_switch(&b->scheduler, &b->ctx[b->index & 1 ? b->n - 1 : 0]);
    if (!b->failed && b->live > 0) {
        char threads[1536];
        describe_threads(b, threads, sizeof threads);
        fail(b, "deadlock, no thread can go on: %s", threads);
    }
    return !b->failed;
}

// -- launching --------------------------------------------------------------------------------------------------
struct Launch {  // filled by runtime_emulator.py through ctypes (the same field order there)
    uint32_t grid[3];
    uint32_t block[3];
    uint32_t shared_bytes;
    int32_t threads;  // OS threads to spread the blocks over, at most one per stack set
    int32_t nargs;
    void** args;
    const int32_t* sizes;
    const char* kinds;  // 'p' pointer, 'i' integer, 'f' floating point
    char* stacks;  // from rf_emu_stacks(threads)
    char* error;
    int64_t error_size;
};

struct Grid {
    const Launch* launch;
    const char* kernel;
    void (*body)(const void*);
    const void* body_arg;
    long long blocks;
    long long next;  // atomic: the next block to run
    int worker;      // atomic: the next worker's stack set
    bool failed;     // atomic
    pthread_mutex_t lock;
};

inline void report(const Launch* l, const char* message) {
    if (l->error_size > 0) snprintf(l->error, size_t(l->error_size), "%s", message);
}

inline void* run_blocks(void* arg) {
    Grid* g = static_cast<Grid*>(arg);
    const Launch* l = g->launch;
    Block* b = new Block;
    char* stacks = l->stacks + size_t(__atomic_fetch_add(&g->worker, 1, __ATOMIC_SEQ_CST)) * STACK * MAX_THREADS;
    const TlsBlock shared = shared_memory();
    b->kernel = g->kernel;
    b->body = g->body;
    b->body_arg = g->body_arg;
    b->grid_dim = dim3{l->grid[0], l->grid[1], l->grid[2]};
    b->block_dim = dim3{l->block[0], l->block[1], l->block[2]};
    b->n = int(l->block[0] * l->block[1] * l->block[2]);
    for (;;) {
        if (__atomic_load_n(&g->failed, __ATOMIC_SEQ_CST)) break;
        const long long i = __atomic_fetch_add(&g->next, 1, __ATOMIC_SEQ_CST);
        if (i >= g->blocks) break;
        b->index = i;
        b->block_idx = dim3{unsigned(i % l->grid[0]), unsigned(i / l->grid[0] % l->grid[1]),
                            unsigned(i / (1ll * l->grid[0] * l->grid[1]))};
        if (!run_block(b, stacks, shared)) {
            pthread_mutex_lock(&g->lock);
            if (!__atomic_exchange_n(&g->failed, true, __ATOMIC_SEQ_CST)) report(l, b->message);
            pthread_mutex_unlock(&g->lock);
            break;
        }
    }
    delete b;
    return nullptr;
}

template <class T>
constexpr char kind_of() {
    return std::is_pointer<T>::value ? 'p' : std::is_floating_point<T>::value ? 'f' : 'i';
}
inline const char* kind_name(char k) { return k == 'p' ? "a pointer" : k == 'f' ? "a floating-point value" : "an integer"; }

template <class... P>
struct Call {
    void (*fn)(P...);
    void* const* args;

    template <size_t... I>
    void invoke(std::index_sequence<I...>) const {
        fn(*static_cast<const std::remove_cv_t<P>*>(args[I])...);
    }
    static void body(const void* self) { static_cast<const Call*>(self)->invoke(std::index_sequence_for<P...>{}); }
};

// One launch of kernel `fn`: the arguments checked against its parameters, then every block run.
template <class... P>
int launch(const Launch* l, void (*fn)(P...), const char* name) {
    constexpr int n = int(sizeof...(P));
    constexpr size_t sizes[] = {sizeof(P)..., 0};
    constexpr char kinds[] = {kind_of<std::remove_cv_t<P>>()..., 0};
    char buf[512];
    if (l->nargs != n) {
        snprintf(buf, sizeof buf, "kernel %s takes %d arguments, the launch passed %d", name, n, l->nargs);
        report(l, buf);
        return 1;
    }
    for (int i = 0; i < n; ++i) {
        if (size_t(l->sizes[i]) != sizes[i] || l->kinds[i] != kinds[i]) {
            snprintf(buf, sizeof buf, "kernel %s: argument %d is %s of %zu bytes, the launch passed %s of %d bytes",
                     name, i, kind_name(kinds[i]), sizes[i], kind_name(l->kinds[i]), l->sizes[i]);
            report(l, buf);
            return 1;
        }
    }
    const long long threads = 1ll * l->block[0] * l->block[1] * l->block[2];
    if (threads < 1 || threads > MAX_THREADS) {
        snprintf(buf, sizeof buf, "kernel %s: a block of %lld threads (at most %d)", name, threads, MAX_THREADS);
        report(l, buf);
        return 1;
    }
    if (l->shared_bytes) {
        snprintf(buf, sizeof buf, "kernel %s: dynamic shared memory (%u bytes) is not emulated", name, l->shared_bytes);
        report(l, buf);
        return 1;
    }
    const Call<P...> call{fn, l->args};
    Grid g{l, name, &Call<P...>::body, &call, 1ll * l->grid[0] * l->grid[1] * l->grid[2], 0, 0, false,
           PTHREAD_MUTEX_INITIALIZER};
    const long long workers = l->threads < 1 ? 1 : l->threads < g.blocks ? l->threads : g.blocks;
    pthread_t tids[MAX_WORKERS];
    int started = 0;
    for (long long i = 1; i < workers && started < MAX_WORKERS; ++i)
        if (pthread_create(&tids[started], nullptr, run_blocks, &g) == 0) ++started;
    run_blocks(&g);
    for (int i = 0; i < started; ++i) pthread_join(tids[i], nullptr);
    return g.failed ? 1 : 0;
}

}  // namespace rf_emu

extern "C" __attribute__((visibility("default"))) void* rf_emu_stacks(int sets) {
    using namespace rf_emu;
    const size_t page = size_t(sysconf(_SC_PAGESIZE)), align = STACK * COLOURS;
    if (sets < 1 || sets > MAX_WORKERS || 4 * page > STACK) return nullptr;
    const size_t bytes = STACK * MAX_THREADS * size_t(sets) + align;
    void* raw = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + align - 1) & ~(uintptr_t)(align - 1));
    for (size_t i = 0; i < MAX_THREADS * size_t(sets); ++i)
        if (mprotect(base + i * STACK + page, page, PROT_NONE) != 0) return nullptr;  // a guard page
    return base;
}

extern "C" void rf_emu_fiber_main() {
    rf_emu::Fiber* f = rf_emu::self();
    f->block->body(f->block->body_arg);
    rf_emu::exit_thread(f);
}

// The launch table's entries: one extern "C" function per kernel of the unit, called by runtime_emulator.py.
#define RF_EMU_ENTRY(name)                                                                             \
    extern "C" __attribute__((visibility("default"))) int rf_emu_launch_##name(const rf_emu::Launch* l) { \
        return rf_emu::launch(l, name, #name);                                                        \
    }
