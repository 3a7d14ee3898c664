//! The `ferry` binary; all behaviour lives in [`ferry::cli`].

/// jemalloc: the record path allocates and frees many small JSON values across threads,
/// where glibc's allocator spent a third of the CPU (see the README's benchmark section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Two arenas (one per core) and quick return of freed pages keep the resident set small.
/// (jemalloc reads its options from this exported symbol; the one exception to `unsafe_code`.)
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] = b"narenas:2,dirty_decay_ms:500,muzzy_decay_ms:0\0";

fn main() {
    std::process::exit(ferry::cli::main());
}
