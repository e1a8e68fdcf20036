//! Raw system calls through inline assembly: no libc, no `errno`, no locks.
//!
//! The code that runs between clone and exec shares the parent's memory (`CLONE_VM`), so it must
//! not touch anything the parent may hold: libc's `errno` lives in the parent thread's TLS, and a
//! lock taken there would deadlock. These wrappers return `-errno` on failure, like the kernel.
//! See syscall(2), "Architecture calling conventions".

#[cfg(target_arch = "x86_64")]
mod arch {
    use core::arch::asm;

    /// # Safety
    /// The caller upholds the contract of syscall `n` for these arguments.
    #[inline(always)]
    pub unsafe fn syscall6(n: i64, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the x86_64 Linux syscall ABI: number in rax, arguments in rdi, rsi, rdx, r10,
        // r8, r9; the kernel clobbers rcx and r11. The caller vouches for the arguments.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
                options(nostack, preserves_flags)
            );
        }
        ret
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use core::arch::asm;

    /// # Safety
    /// The caller upholds the contract of syscall `n` for these arguments.
    #[inline(always)]
    pub unsafe fn syscall6(n: i64, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the aarch64 Linux syscall ABI: number in x8, arguments in x0..x5, result in x0.
        unsafe {
            asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] => ret,
                in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
                options(nostack, preserves_flags)
            );
        }
        ret
    }
}

pub(crate) use arch::syscall6;

/// A system call with up to six arguments; missing ones are zero.
///
/// # Safety
/// The caller upholds the contract of syscall `n` for these arguments.
#[inline(always)]
pub(crate) unsafe fn syscall(n: i64, args: &[usize]) -> isize {
    let mut a = [0usize; 6];
    let mut i = 0;
    while i < args.len() && i < 6 {
        a[i] = args[i];
        i += 1;
    }
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a) }
}
