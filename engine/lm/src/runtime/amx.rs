//! Intel AMX (Advanced Matrix Extensions): detection and the tile instructions, for the integer
//! and bf16 GEMM kernels of prompts and of the sentence encoder.
//!
//! AMX multiplies 16-row tiles in eight tile registers (`tmm0`-`tmm7`, up to 16 rows x 64 bytes
//! each): `tdpbssd` adds a 16x16 int32 block of int8 products over 64 k, `tdpbf16ps` a 16x16 f32
//! block of bf16 products over 32 k. One core does ~1,500 int8 GOP/s here against ~100 GFLOP/s of
//! f32 FMA (measured on the Sapphire Rapids host, 2026-12-04). The B operand is in the "VNNI"
//! layout: row `k / 4` (int8) or `k / 2` (bf16) of the tile holds, for each output column `n`, the
//! 4 (or 2) consecutive k of that column side by side ([`vnni_offset_i8`]).
//!
//! Rust's AMX intrinsics are unstable, so the instructions are written as inline assembly (the
//! assembler accepts them without target features). Linux hands the tile registers to a process
//! only after it asks (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`support`] asks
//! once and reports AMX as missing when the CPU, the OS state (XCR0) or that request says no, so
//! callers fall back to their AVX paths. A thread loads its tile shape with [`TileConfig::load`]
//! before the first tile instruction.

use std::sync::OnceLock;

/// What this process may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Support {
    /// `tdpbssd` and friends (AMX-TILE + AMX-INT8).
    pub int8: bool,
    /// `tdpbf16ps` (AMX-TILE + AMX-BF16).
    pub bf16: bool,
}

/// AMX support of this CPU and OS for this process, asked once. With `PSY_NO_AMX=1` set AMX
/// counts as missing, to measure or test the fallback paths on an AMX host.
pub fn support() -> Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    *SUPPORT.get_or_init(|| {
        if std::env::var_os("PSY_NO_AMX").is_some_and(|v| v != "0") {
            return Support::default();
        }
        detect()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unused_unsafe)] // CPUID is `unsafe` before Rust 1.87 (MSRV 1.85), safe after
fn detect() -> Support {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY (before 1.87): CPUID exists on every x86_64 CPU.
    let max_leaf = unsafe { __cpuid(0) }.eax;
    if max_leaf < 7 {
        return Support::default();
    }
    let leaf7 = unsafe { __cpuid_count(7, 0) };
    let tile = leaf7.edx & (1 << 24) != 0;
    let bf16 = leaf7.edx & (1 << 22) != 0;
    let int8 = leaf7.edx & (1 << 25) != 0;
    let osxsave = unsafe { __cpuid(1) }.ecx & (1 << 27) != 0;
    if !tile || !osxsave {
        return Support::default();
    }
    // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS saves tile state on context switches.
    let xcr0 = xgetbv0();
    if xcr0 & (0b11 << 17) != 0b11 << 17 || !request_tile_permission() {
        return Support::default();
    }
    Support { int8, bf16 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> Support {
    Support::default()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called after CPUID reported OSXSAVE, which makes XGETBV legal.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`; true when Linux granted it (kernels
/// before 5.16 do not know the request and answer an error: no AMX then).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let rc: i64;
    // SAFETY: a plain system call with integer arguments; it reads and writes no user memory.
    unsafe {
        std::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL => rc,
            in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    rc == 0
}

/// The 64-byte tile configuration `ldtilecfg` reads: palette 1, and each tile's rows and bytes per
/// row (at most 16 rows of 64 bytes).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl Default for TileConfig {
    fn default() -> Self {
        Self {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        }
    }
}

impl TileConfig {
    /// Shapes tile `tile` (0-7) as `rows` rows (1-16) of `bytes` bytes (4-64, a multiple of 4).
    pub fn with_tile(mut self, tile: usize, rows: u8, bytes: u16) -> Self {
        assert!(
            tile < 8
                && (1..=16).contains(&rows)
                && bytes <= 64
                && bytes.is_multiple_of(4)
                && bytes > 0
        );
        self.rows[tile] = rows;
        self.bytes_per_row[tile] = bytes;
        self
    }

    /// Loads this shape into the calling thread's tile unit, unless it is already loaded there.
    ///
    /// # Safety
    /// [`support`] must have reported AMX (int8 or bf16) for this process.
    pub unsafe fn load(&self) {
        thread_local! {
            static LOADED: std::cell::Cell<Option<TileConfig>> = const { std::cell::Cell::new(None) };
        }
        if LOADED.with(|c| c.get()) == Some(*self) {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("ldtilecfg [{0}]", in(reg) self as *const TileConfig, options(nostack, readonly));
        LOADED.with(|c| c.set(Some(*self)));
    }
}

/// Byte offset of int8 element (k, n) of a B operand in the VNNI layout with `n_cols` columns:
/// row `k / 4` holds `n_cols` groups of 4 consecutive k.
pub fn vnni_offset_i8(k: usize, n: usize, n_cols: usize) -> usize {
    (k / 4) * n_cols * 4 + n * 4 + k % 4
}

/// Element offset of bf16 element (k, n) of a B operand in the VNNI layout with `n_cols` columns:
/// row `k / 2` holds `n_cols` pairs of consecutive k.
pub fn vnni_offset_bf16(k: usize, n: usize, n_cols: usize) -> usize {
    (k / 2) * n_cols * 2 + n * 2 + k % 2
}

/// The tile instructions, one register each. Tile numbers are const generics because the
/// register is part of the instruction. All are `unsafe`: the caller must have checked
/// [`support`], loaded a [`TileConfig`] whose shapes fit the operation, and pass pointers valid
/// for `rows x bytes` of the tile at the given stride (bytes between rows).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::missing_safety_doc)] // one contract for the module, stated above
pub mod tile {
    use std::arch::asm;

    /// Sets tile `T` to zero.
    #[inline(always)]
    pub unsafe fn zero<const T: u8>() {
        asm!("tilezero tmm{t}", t = const T, options(nomem, nostack));
    }

    /// Loads tile `T` from `ptr`, rows `stride` bytes apart.
    #[inline(always)]
    pub unsafe fn load<const T: u8>(ptr: *const u8, stride: usize) {
        asm!("tileloadd tmm{t}, [{p} + {s}*1]", t = const T, p = in(reg) ptr, s = in(reg) stride,
            options(nostack, readonly));
    }

    /// Stores tile `T` to `ptr`, rows `stride` bytes apart.
    #[inline(always)]
    pub unsafe fn store<const T: u8>(ptr: *mut u8, stride: usize) {
        asm!("tilestored [{p} + {s}*1], tmm{t}", t = const T, p = in(reg) ptr, s = in(reg) stride,
            options(nostack));
    }

    /// `C += A . B` on int8 x int8 (signed x signed) into int32: C is tile `C`, A tile `A`
    /// (rows x 4k bytes), B tile `B` (k rows of 4 bytes per output column, VNNI layout).
    #[inline(always)]
    pub unsafe fn dpbssd<const C: u8, const A: u8, const B: u8>() {
        asm!("tdpbssd tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
            options(nomem, nostack));
    }

    /// `C += A . B` with A unsigned and B signed int8 (Q4 nibbles, 0..15, in A).
    #[inline(always)]
    pub unsafe fn dpbusd<const C: u8, const A: u8, const B: u8>() {
        asm!("tdpbusd tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
            options(nomem, nostack));
    }

    /// `C += A . B` with A signed and B unsigned int8.
    #[inline(always)]
    pub unsafe fn dpbsud<const C: u8, const A: u8, const B: u8>() {
        asm!("tdpbsud tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
            options(nomem, nostack));
    }

    /// `C += A . B` on bf16 pairs into f32.
    #[inline(always)]
    pub unsafe fn dpbf16ps<const C: u8, const A: u8, const B: u8>() {
        asm!("tdpbf16ps tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
            options(nomem, nostack));
    }

    /// Releases the tile state (the thread's next tile use must load a configuration again).
    #[inline(always)]
    pub unsafe fn release() {
        asm!("tilerelease", options(nomem, nostack));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 32x32 int32 block from a 32x128 int8 A and a 128x32 int8 B, with two accumulators per
    // row of tiles, against the plain triple loop.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn int8_tiles_match_the_plain_product() {
        if !support().int8 {
            eprintln!("skipped: no AMX-INT8 on this CPU/OS");
            return;
        }
        let (m, n, k) = (32usize, 32usize, 128usize);
        let a: Vec<i8> = (0..m * k)
            .map(|i| ((i * 37 + 11) % 255) as u8 as i8)
            .collect();
        let b: Vec<i8> = (0..k * n)
            .map(|i| ((i * 53 + 7) % 255) as u8 as i8)
            .collect();
        // B (row-major k x n) into one VNNI panel per 16 output columns.
        let panel = |n0: usize| {
            let mut p = vec![0i8; k * 16];
            for kk in 0..k {
                for j in 0..16 {
                    p[vnni_offset_i8(kk, j, 16)] = b[kk * n + n0 + j];
                }
            }
            p
        };
        let (b0, b1) = (panel(0), panel(16));
        let mut c = vec![0i32; m * n];
        let cfg = (0..4)
            .fold(TileConfig::default(), |c, t| c.with_tile(t, 16, 64))
            .with_tile(4, 16, 64)
            .with_tile(5, 16, 64)
            .with_tile(6, 16, 64)
            .with_tile(7, 16, 64);
        unsafe {
            cfg.load();
            tile::zero::<0>();
            tile::zero::<1>();
            tile::zero::<2>();
            tile::zero::<3>();
            for k0 in (0..k).step_by(64) {
                tile::load::<4>(a.as_ptr().add(k0) as *const u8, k);
                tile::load::<5>(a.as_ptr().add(16 * k + k0) as *const u8, k);
                tile::load::<6>(b0.as_ptr().add(k0 / 4 * 64) as *const u8, 64);
                tile::load::<7>(b1.as_ptr().add(k0 / 4 * 64) as *const u8, 64);
                tile::dpbssd::<0, 4, 6>();
                tile::dpbssd::<1, 4, 7>();
                tile::dpbssd::<2, 5, 6>();
                tile::dpbssd::<3, 5, 7>();
            }
            let out = c.as_mut_ptr() as *mut u8;
            tile::store::<0>(out, n * 4);
            tile::store::<1>(out.add(16 * 4), n * 4);
            tile::store::<2>(out.add(16 * n * 4), n * 4);
            tile::store::<3>(out.add(16 * n * 4 + 16 * 4), n * 4);
        }
        for i in 0..m {
            for j in 0..n {
                let want: i32 = (0..k)
                    .map(|kk| a[i * k + kk] as i32 * b[kk * n + j] as i32)
                    .sum();
                assert_eq!(c[i * n + j], want, "C[{i}][{j}]");
            }
        }
    }

    // bf16 x bf16 into f32 on one 16x16 tile over k = 64, against f64 sums of the same bf16 values
    // (products of bf16 are exact in f32; only the sum's rounding differs).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn bf16_tiles_match_the_plain_product() {
        if !support().bf16 {
            eprintln!("skipped: no AMX-BF16 on this CPU/OS");
            return;
        }
        let (m, n, k) = (16usize, 16usize, 64usize);
        let bf = |x: f32| half::bf16::from_f32(x);
        let a: Vec<half::bf16> = (0..m * k)
            .map(|i| bf(((i * 7) % 19) as f32 / 8.0 - 1.0))
            .collect();
        let b: Vec<half::bf16> = (0..k * n)
            .map(|i| bf(((i * 5) % 23) as f32 / 16.0 - 0.7))
            .collect();
        let mut panel = vec![bf(0.0); k * n];
        for kk in 0..k {
            for j in 0..n {
                panel[vnni_offset_bf16(kk, j, n)] = b[kk * n + j];
            }
        }
        let mut c = vec![0f32; m * n];
        let cfg = TileConfig::default()
            .with_tile(0, 16, 64)
            .with_tile(1, 16, 64)
            .with_tile(2, 16, 64);
        unsafe {
            cfg.load();
            tile::zero::<0>();
            for k0 in (0..k).step_by(32) {
                tile::load::<1>(a.as_ptr().add(k0) as *const u8, k * 2);
                tile::load::<2>(panel.as_ptr().add(k0 / 2 * n * 2) as *const u8, n * 4);
                tile::dpbf16ps::<0, 1, 2>();
            }
            tile::store::<0>(c.as_mut_ptr() as *mut u8, n * 4);
        }
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|kk| a[i * k + kk].to_f64() * b[kk * n + j].to_f64())
                    .sum();
                assert!(
                    (c[i * n + j] as f64 - want).abs() < 1e-4,
                    "C[{i}][{j}] {} vs {want}",
                    c[i * n + j]
                );
            }
        }
    }

    #[test]
    fn vnni_offsets_interleave_consecutive_k() {
        // int8: k 0..3 of column 1 sit at bytes 4..8 of row 0; k 4 of column 0 starts row 1.
        assert_eq!(
            (0..4).map(|k| vnni_offset_i8(k, 1, 16)).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        assert_eq!(vnni_offset_i8(4, 0, 16), 64);
        assert_eq!(vnni_offset_bf16(3, 2, 16), 32 + 4 + 1);
    }
}
