//! A shared library is checked against its own ELF headers before the loader maps it: a file
//! cut short (an interrupted copy) would otherwise be mapped past its end, and the first touch of
//! the missing pages kills the process with SIGBUS and no message.

/// What the headers say about a file.
#[derive(Debug, PartialEq, Eq)]
pub enum ElfCheck {
    /// Not an ELF file at all (the registry skips it like any non-plugin).
    NotElf,
    /// A 64-bit little-endian ELF file whose headers and segments lie within it.
    Complete,
    /// An ELF file that ends before what its headers describe.
    Truncated { needed: u64, len: u64 },
}

fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u64)
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Checks a file of `len` bytes from its beginning `bytes` (the ELF header and the program
/// headers): the section-header table, the program-header table and every loadable segment must
/// end within the file.
pub fn check(bytes: &[u8], len: u64) -> ElfCheck {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return ElfCheck::NotElf;
    }
    // Only 64-bit little-endian files are loadable here; a short or foreign header is truncated
    // or unusable either way, and the loader reports the rest.
    let header = (|| {
        if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
            return None;
        }
        let (phoff, shoff) = (u64_at(bytes, 0x20)?, u64_at(bytes, 0x28)?);
        let (phentsize, phnum) = (u16_at(bytes, 0x36)?, u16_at(bytes, 0x38)?);
        let (shentsize, shnum) = (u16_at(bytes, 0x3a)?, u16_at(bytes, 0x3c)?);
        Some((phoff, phentsize, phnum, shoff, shentsize, shnum))
    })();
    let Some((phoff, phentsize, phnum, shoff, shentsize, shnum)) = header else {
        return if len < 0x40 { ElfCheck::Truncated { needed: 0x40, len } } else { ElfCheck::Complete };
    };
    let mut needed = (shoff + shentsize * shnum).max(phoff + phentsize * phnum);
    for i in 0..phnum {
        let at = (phoff + i * phentsize) as usize;
        let (Some(kind), Some(offset), Some(filesz)) =
            (u32_at(bytes, at), u64_at(bytes, at + 8), u64_at(bytes, at + 32))
        else {
            break;
        };
        const PT_LOAD: u64 = 1;
        if kind == PT_LOAD {
            needed = needed.max(offset + filesz);
        }
    }
    if needed > len {
        ElfCheck::Truncated { needed, len }
    } else {
        ElfCheck::Complete
    }
}

/// Reads what [`check`] needs of the file at `path` (its header and program headers).
pub fn check_file(path: &std::path::Path) -> std::io::Result<ElfCheck> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut head = vec![0u8; 0x40];
    let n = f.read(&mut head)?;
    head.truncate(n);
    if let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(&head, 0x20), u16_at(&head, 0x36), u16_at(&head, 0x38))
    {
        let end = (phoff + phentsize * phnum).min(len).min(1 << 20) as usize;
        if end > head.len() {
            let mut rest = vec![0u8; end - head.len()];
            let m = f.read(&mut rest)?;
            head.extend_from_slice(&rest[..m]);
        }
    }
    Ok(check(&head, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_cut_short_is_truncated_and_garbage_is_not_elf() {
        // This test binary is itself a complete 64-bit ELF file.
        let exe = std::env::current_exe().unwrap();
        let me = std::fs::read(&exe).unwrap();
        let len = me.len() as u64;
        assert_eq!(check(&me, len), ElfCheck::Complete);
        assert_eq!(check_file(&exe).unwrap(), ElfCheck::Complete);
        match check(&me[..me.len() / 2], len / 2) {
            ElfCheck::Truncated { needed, len: l } => assert!(needed > l && l == len / 2),
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("lib.so");
        std::fs::write(&cut, &me[..me.len() / 2]).unwrap();
        assert!(matches!(check_file(&cut).unwrap(), ElfCheck::Truncated { .. }));
        assert!(matches!(check(&me[..20], 20), ElfCheck::Truncated { .. }));
        assert_eq!(check(b"this is not an ELF file", 23), ElfCheck::NotElf);
    }
}
