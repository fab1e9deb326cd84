//! What this process sees of CUDA: whether libtorch's CUDA backend is loaded, the CUDA runtime,
//! driver and cuDNN versions, and the visible devices. tch exposes only the device count, so the
//! rest is read through the CUDA runtime and cuDNN libraries libtorch itself loaded (looked up in
//! the process's global symbol scope; nothing new is loaded, nothing is linked at build time).
use archai_runlog::schema::{CudaDevice, CudaEnvironment};
use std::ffi::{c_char, c_int, CStr};

/// Whether libtorch_cuda is mapped into this process. Without it libtorch registers no CUDA
/// backend and every run would train on the CPU (see host/build.rs).
pub fn libtorch_cuda_loaded() -> bool {
    crate::environment::loaded_library("libtorch_cuda.so").is_some()
}

/// CUDA as this process sees it. Never fails: what cannot be read is left out.
pub fn environment() -> CudaEnvironment {
    let runtime = Runtime::find();
    let count = tch::Cuda::device_count().max(0) as usize;
    let devices = match &runtime {
        Some(rt) => (0..count).filter_map(|i| rt.device(i)).collect(),
        None => Vec::new(),
    };
    CudaEnvironment {
        libtorch_cuda_loaded: libtorch_cuda_loaded(),
        runtime_version: runtime.as_ref().and_then(|rt| rt.version("cudaRuntimeGetVersion")),
        driver_version: runtime.as_ref().and_then(|rt| rt.version("cudaDriverGetVersion")),
        cudnn_version: cudnn_version(),
        devices,
    }
}

/// Waits for the device's queued work (a no-op on the CPU), so wall-clock timings measure the
/// work and not its launch.
pub fn synchronize(device: tch::Device) {
    if let tch::Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// One line for people: `cuda:0 NVIDIA H200 (139.8 GiB, sm 9.0)` or `cpu`.
pub fn describe(device: tch::Device, env: &CudaEnvironment) -> String {
    match device {
        tch::Device::Cuda(i) => match env.devices.iter().find(|d| d.index == i) {
            Some(d) => format!(
                "cuda:{i} {} ({:.1} GiB, sm {}, CUDA {}, cuDNN {})",
                d.name,
                d.total_memory_mib as f64 / 1024.0,
                d.compute_capability,
                env.runtime_version.as_deref().unwrap_or("?"),
                env.cudnn_version.as_deref().unwrap_or("?")
            ),
            None => format!("cuda:{i}"),
        },
        _ => "cpu".into(),
    }
}

type IntOut = unsafe extern "C" fn(*mut c_int) -> c_int;
type Attribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type Properties = unsafe extern "C" fn(*mut DevicePropPrefix, c_int) -> c_int;

/// The leading fields of `cudaDeviceProp`, whose layout has not changed since CUDA 10 (checked
/// against CUDA 13's driver_types.h), followed by room for the rest of the struct (about 1 KiB in
/// CUDA 13), which is never read.
#[repr(C)]
struct DevicePropPrefix {
    name: [c_char; 256],
    uuid: [u8; 16],
    luid: [c_char; 8],
    luid_device_node_mask: u32,
    total_global_mem: usize,
    rest: [u8; 8192],
}

const ATTR_MULTIPROCESSORS: c_int = 16;
const ATTR_CC_MAJOR: c_int = 75;
const ATTR_CC_MINOR: c_int = 76;

struct Runtime {
    this: libloading::os::unix::Library,
}

impl Runtime {
    /// The CUDA runtime in the global scope (libtorch_cpu depends on libcudart), if any.
    fn find() -> Option<Self> {
        let this = libloading::os::unix::Library::this();
        // SAFETY: looking a symbol up runs no code.
        let present = unsafe { this.get::<IntOut>(b"cudaRuntimeGetVersion\0").is_ok() };
        present.then_some(Self { this })
    }

    /// `major.minor` from a `cuda*GetVersion` function (1000 * major + 10 * minor); None when
    /// the call fails or reports 0 (no driver).
    fn version(&self, symbol: &str) -> Option<String> {
        let name = format!("{symbol}\0");
        // SAFETY: both functions have the signature `cudaError_t f(int*)`.
        let f = unsafe { self.this.get::<IntOut>(name.as_bytes()).ok()? };
        let mut v: c_int = 0;
        let status = unsafe { f(&mut v) };
        (status == 0 && v > 0).then(|| format!("{}.{}", v / 1000, (v % 1000) / 10))
    }

    fn device(&self, index: usize) -> Option<CudaDevice> {
        // SAFETY: signatures as in CUDA's cuda_runtime_api.h; the property buffer is larger than
        // any cudaDeviceProp and zeroed.
        unsafe {
            let props = self.this.get::<Properties>(b"cudaGetDeviceProperties\0").ok()?;
            let attribute = self.this.get::<Attribute>(b"cudaDeviceGetAttribute\0").ok()?;
            let mut p: Box<DevicePropPrefix> = Box::new(std::mem::zeroed());
            if props(&mut *p, index as c_int) != 0 {
                return None;
            }
            let attr = |a: c_int| {
                let mut v: c_int = 0;
                (attribute(&mut v, a, index as c_int) == 0).then_some(v)
            };
            let name = CStr::from_ptr(p.name.as_ptr()).to_string_lossy().into_owned();
            Some(CudaDevice {
                index,
                name,
                total_memory_mib: (p.total_global_mem / (1024 * 1024)) as u64,
                compute_capability: format!(
                    "{}.{}",
                    attr(ATTR_CC_MAJOR).unwrap_or(0),
                    attr(ATTR_CC_MINOR).unwrap_or(0)
                ),
                multiprocessors: attr(ATTR_MULTIPROCESSORS).unwrap_or(0) as i64,
            })
        }
    }
}

/// cuDNN's version (`cudnnGetVersion`: 10000 * major + 100 * minor + patch since cuDNN 9), when
/// libtorch loaded cuDNN.
fn cudnn_version() -> Option<String> {
    let this = libloading::os::unix::Library::this();
    // SAFETY: `size_t cudnnGetVersion(void)` only reads a constant.
    let v = unsafe {
        let f = this.get::<unsafe extern "C" fn() -> usize>(b"cudnnGetVersion\0").ok()?;
        f()
    };
    (v > 0).then(|| format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_the_cuda_backend_and_reads_its_versions() {
        // host/build.rs links libtorch_cuda into every binary of this package, test binaries too.
        let env = super::environment();
        assert!(env.libtorch_cuda_loaded, "libtorch_cuda.so is not mapped: host/build.rs did not link it");
        // The PyTorch 2.11 wheel is the CUDA 13 build with cuDNN 9.
        assert!(env.runtime_version.as_deref().is_some_and(|v| v.starts_with("13.")), "{env:?}");
        assert!(env.cudnn_version.as_deref().is_some_and(|v| v.starts_with("9.")), "{env:?}");
        assert_eq!(env.devices.len(), tch::Cuda::device_count() as usize, "{env:?}");
        for d in &env.devices {
            assert!(!d.name.is_empty() && d.total_memory_mib > 0, "{d:?}");
        }
    }

    #[test]
    fn devices_are_described_in_one_line() {
        let env = archai_runlog::schema::CudaEnvironment {
            libtorch_cuda_loaded: true,
            runtime_version: Some("13.0".into()),
            driver_version: Some("13.0".into()),
            cudnn_version: Some("9.15.0".into()),
            devices: vec![archai_runlog::schema::CudaDevice {
                index: 0,
                name: "NVIDIA H200".into(),
                total_memory_mib: 143_771,
                compute_capability: "9.0".into(),
                multiprocessors: 132,
            }],
        };
        assert_eq!(
            super::describe(tch::Device::Cuda(0), &env),
            "cuda:0 NVIDIA H200 (140.4 GiB, sm 9.0, CUDA 13.0, cuDNN 9.15.0)"
        );
        assert_eq!(super::describe(tch::Device::Cpu, &env), "cpu");
    }
}
