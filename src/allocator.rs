//! glibc malloc settings for a process that allocates and frees tensors of tens of MB all the time. Called first
//! thing by the binary's `main` and by the benchmarks, so both measure the same allocator.

/// Keep freed memory in the process instead of handing it back to the kernel after every tensor.
///
/// burn frees and reallocates activation buffers of tens of MB on every layer; with glibc's defaults the heap
/// top is trimmed and re-grown each time, and every re-grown page faults in again (≈ 9 million page faults,
/// 22 s of system time in a 300-per-class `train`). A large trim threshold and top pad cut that to ≈ 1.2 million
/// faults and 5 s (measured on the 2-core dev VM, 2026-11-27; BENCHMARKS.md) for ≈ 12 % more peak memory. Left
/// alone when the user set `GLIBC_TUNABLES` themselves.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    // SAFETY: mallopt takes malloc's own lock and only changes its parameters (memory already allocated stays
    // valid); every value is within the range glibc documents, and it rejects others by returning 0, which
    // leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
