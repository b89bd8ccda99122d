//! The CPU a measurement ran on. Int8 speed-ups depend on it more than on
//! anything hone does: without an int8 dot-product instruction (x86 VNNI,
//! Arm SDOT) an int8 multiply-accumulate costs two instructions where fp32
//! FMA costs one per lane, which caps int8 matrix products near 2× fp32.
//! A report carries this so its numbers can be read on another machine.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// The CPU model as the OS names it, or the architecture.
    pub cpu: String,
    /// Logical cores this process may use.
    pub cores: usize,
    /// The best int8 dot-product instructions ORT's kernels can use here.
    pub int8_isa: String,
    /// Whether that ISA has a one-instruction int8 dot product.
    pub int8_dot_product: bool,
}

impl Machine {
    pub fn detect() -> Machine {
        let (int8_isa, int8_dot_product) = int8_isa();
        Machine {
            cpu: cpu_name().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            int8_isa: int8_isa.to_string(),
            int8_dot_product,
        }
    }

    /// One line for a person: the CPU and what it means for int8.
    pub fn describe(&self) -> String {
        let int8 = if self.int8_dot_product {
            "int8 dot products in one instruction"
        } else {
            "no int8 dot-product instruction, so int8 matrix products run at most about 2× fp32 here; CPUs with one (x86 VNNI, Arm dotprod) go further"
        };
        format!(
            "measured on {}, {} core(s), {}: {}",
            self.cpu, self.cores, self.int8_isa, int8
        )
    }
}

#[cfg(target_arch = "x86_64")]
fn int8_isa() -> (&'static str, bool) {
    if std::arch::is_x86_feature_detected!("avx512vnni") {
        ("AVX-512 VNNI", true)
    } else if std::arch::is_x86_feature_detected!("avxvnni") {
        ("AVX-VNNI", true)
    } else if std::arch::is_x86_feature_detected!("avx2") {
        ("AVX2 without VNNI", false)
    } else {
        ("SSE", false)
    }
}

#[cfg(target_arch = "aarch64")]
fn int8_isa() -> (&'static str, bool) {
    if std::arch::is_aarch64_feature_detected!("i8mm") {
        ("Arm I8MM", true)
    } else if std::arch::is_aarch64_feature_detected!("dotprod") {
        ("Arm dotprod", true)
    } else {
        ("Arm NEON", false)
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn int8_isa() -> (&'static str, bool) {
    ("unknown", false)
}

/// `model name` from /proc/cpuinfo (Linux); None elsewhere.
fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_name(&info)
}

fn parse_cpu_name(info: &str) -> Option<String> {
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| matches!(k.trim(), "model name" | "Model" | "Hardware"))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_name_is_read_from_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 7B13\nflags\t\t: fpu\n";
        assert_eq!(parse_cpu_name(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_name("processor\t: 0\n"), None);
        assert_eq!(parse_cpu_name("model name\t:   \n"), None);
    }

    #[test]
    fn detection_names_an_isa_and_says_what_it_means() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(!m.int8_isa.is_empty());
        let line = m.describe();
        assert!(line.contains(&m.int8_isa), "{line}");
        assert_eq!(line.contains("at most about 2×"), !m.int8_dot_product);
    }
}
