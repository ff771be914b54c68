//! The one place that names a compute backend.
//!
//! A process picks its backend once ([`select`], from the global `--device` option); every other module asks
//! for [`inference`] or [`training`] and never names a backend. The default build has only the `flex` CPU
//! backend; the `vulkan` and `cuda` Cargo features add GPU backends (burn's CubeCL runtimes), the `tch` feature
//! burn's LibTorch backend (PyTorch's own kernels, on the CPU or an NVIDIA GPU; see `tools/tch_build.sh`).

use burn::tensor::Device;
use std::sync::OnceLock;

/// A compute backend the user can ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's `flex` CPU backend (always built).
    #[default]
    Cpu,
    /// A GPU through Vulkan (Cargo feature `vulkan`).
    Vulkan,
    /// An NVIDIA GPU through CUDA (Cargo feature `cuda`; its build downloads LLVM, so it needs internet).
    Cuda,
    /// PyTorch's C++ library on the CPU (Cargo feature `tch`; libtorch found at run time).
    Libtorch,
    /// PyTorch's C++ library on the first NVIDIA GPU (Cargo feature `tch`, linked against a CUDA libtorch).
    LibtorchCuda,
}

impl Backend {
    /// Whether this build can run the backend.
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Cpu => true,
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Cuda => cfg!(feature = "cuda"),
            Backend::Libtorch | Backend::LibtorchCuda => cfg!(feature = "tch"),
        }
    }

    /// Whether this backend runs on a GPU.
    pub fn is_gpu(self) -> bool {
        matches!(
            self,
            Backend::Vulkan | Backend::Cuda | Backend::LibtorchCuda
        )
    }

    /// Whether this is one of burn's CubeCL runtimes (kernels compiled at first use and cached on disk).
    fn is_cubecl(self) -> bool {
        matches!(self, Backend::Vulkan | Backend::Cuda)
    }

    /// The Cargo feature that builds this backend in.
    fn feature(self) -> &'static str {
        match self {
            Backend::Cpu => "",
            Backend::Vulkan => "vulkan",
            Backend::Cuda => "cuda",
            Backend::Libtorch | Backend::LibtorchCuda => "tch",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Vulkan => "vulkan",
            Backend::Cuda => "cuda",
            Backend::Libtorch => "libtorch",
            Backend::LibtorchCuda => "libtorch-cuda",
        })
    }
}

/// Why a backend cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "this tumornet was built without the `{backend}` backend; rebuild with `cargo build --release --features {feature}`"
    )]
    NotCompiled {
        backend: Backend,
        feature: &'static str,
    },
    #[error("the backend was already chosen as {chosen}; it cannot change to {asked} within one process")]
    AlreadyChosen { chosen: Backend, asked: Backend },
    #[error("no {backend} device could be opened: {message}")]
    Unavailable { backend: Backend, message: String },
}

/// The float type classifier inference computes in off the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision everywhere.
    #[default]
    F32,
    /// Half precision for classifier inference on a GPU backend (weights and activations in f16, logits
    /// widened to f32); the CPU, training and the U-Net stay in f32.
    F16,
}

/// How a CubeCL GPU backend runs ResNet18's convolutions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuConv {
    /// The backend's own convolution kernels.
    #[default]
    Native,
    /// Patches gathered by strided slices (im2col), then one matrix product per convolution, on the
    /// backend's matmul kernels (`vulkan` has no f32 matrix-core convolution, and its direct kernel is slow).
    Matmul,
}

static SELECTED: OnceLock<Backend> = OnceLock::new();
static PRECISION: OnceLock<Precision> = OnceLock::new();
static GPU_CONV: OnceLock<GpuConv> = OnceLock::new();

/// Set the inference precision and the GPU convolution route for this process (once, at start-up; later calls
/// are ignored).
pub fn configure(precision: Precision, gpu_conv: GpuConv) {
    let _ = PRECISION.set(precision);
    let _ = GPU_CONV.set(gpu_conv);
}

/// The float type classifier inference computes in: [`Precision::F16`] only where it was asked for and the
/// backend is a GPU.
pub fn precision() -> Precision {
    match PRECISION.get() {
        Some(Precision::F16) if backend().is_gpu() => Precision::F16,
        _ => Precision::F32,
    }
}

/// What of `precision` and `gpu_conv` the selected backend ignores, as sentences for the user.
pub fn ignored_options(precision: Precision, gpu_conv: GpuConv) -> Vec<String> {
    let backend = backend();
    let mut ignored = Vec::new();
    if precision == Precision::F16 && !backend.is_gpu() {
        ignored.push(format!(
            "--precision f16 applies to GPU backends; `{backend}` computes in f32"
        ));
    }
    if gpu_conv == GpuConv::Matmul && !backend.is_cubecl() {
        ignored.push(format!(
            "--gpu-conv matmul applies to `vulkan` and `cuda`; `{backend}` keeps its own convolutions"
        ));
    }
    ignored
}

/// Whether convolutions take the matrix-product route on this backend: asked for, on a CubeCL GPU backend.
pub fn gpu_matmul_convolutions() -> bool {
    GPU_CONV.get() == Some(&GpuConv::Matmul) && backend().is_cubecl()
}

/// Choose the backend for this process (once; choosing the same one again is fine) and open it with a probe
/// (any backend but the default CPU). For a CubeCL backend this also turns on the on-disk kernel cache under
/// [`kernel_cache_dir`], so compiled kernels and autotune results survive between runs.
pub fn select(backend: Backend) -> Result<(), DeviceError> {
    if !backend.compiled_in() {
        return Err(DeviceError::NotCompiled {
            backend,
            feature: backend.feature(),
        });
    }
    let mut first = false;
    let chosen = *SELECTED.get_or_init(|| {
        first = true;
        if backend.is_cubecl() {
            configure_kernel_cache();
        }
        backend
    });
    if chosen != backend {
        return Err(DeviceError::AlreadyChosen {
            chosen,
            asked: backend,
        });
    }
    if first && backend != Backend::Cpu {
        probe(backend)?;
    }
    Ok(())
}

/// Open the device with a one-element tensor. A GPU runtime that finds no adapter panics (on its own threads
/// too); that becomes an error here, with the runtime's message, instead of a crash later.
fn probe(backend: Backend) -> Result<(), DeviceError> {
    let hook = std::panic::take_hook();
    let message = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = message.clone();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()));
        if let (Ok(mut slot), Some(text)) = (seen.lock(), text) {
            slot.get_or_insert(text);
        }
    }));
    let result = std::panic::catch_unwind(|| {
        let device = inference();
        burn::tensor::Tensor::<1>::zeros([1], &device)
            .into_data()
            .try_to_vec::<f32>()
            .ok();
    });
    std::panic::set_hook(hook);
    result.map_err(|_| DeviceError::Unavailable {
        backend,
        message: message
            .lock()
            .ok()
            .and_then(|m| m.as_deref().map(first_line))
            .unwrap_or_else(|| "the runtime panicked".to_string()),
    })
}

/// A runtime's panic message up to its first line break, written or escaped (LibTorch's errors carry a C++
/// backtrace after `\n`).
fn first_line(message: &str) -> String {
    let end = [message.find('\n'), message.find("\\n")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(message.len());
    message[..end].trim_end().to_string()
}

/// The backend in use: the one [`select`]ed, else the CPU.
pub fn backend() -> Backend {
    SELECTED.get().copied().unwrap_or_default()
}

/// The device inference runs on.
pub fn inference() -> Device {
    match backend() {
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Device::cuda(burn::tensor::DeviceIndex::Default),
        // burn 0.22 marks its LibTorch backend deprecated (in favour of CubeCL); it stays the one route to
        // PyTorch's kernels that builds offline (docs/gpu.md).
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        Backend::Libtorch => Device::libtorch(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        Backend::LibtorchCuda => Device::libtorch_cuda(0),
        // `select` refuses backends that are not compiled in, so only the CPU reaches here.
        _ => Device::flex(),
    }
}

/// Where random initialisation happens: the CPU, so one seed gives the same starting weights on every backend
/// (move the model with `Module::to_device` afterwards).
pub fn host() -> Device {
    Device::flex()
}

/// Move a module built on [`host`] to `device` with the values it was initialised with there. burn initialises
/// parameters lazily, and `to_device` on a parameter not yet initialised only changes *where* it will be
/// initialised — later, on that device, with that device's random generator — so a seeded host initialisation
/// would silently be replaced by an unseeded one on a GPU. Every parameter is read once on the host first.
pub fn from_host<M: burn::module::Module>(module: M, device: &Device) -> M {
    struct Materialise;
    impl burn::module::ModuleVisitor for Materialise {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            let _ = param.val();
        }
    }
    module.visit(&mut Materialise);
    module.to_device(device)
}

/// The device training runs on: the inference device with autodiff.
pub fn training() -> Device {
    inference().autodiff()
}

/// Where GPU kernels and autotune results are cached: `$TUMORNET_KERNEL_CACHE`, else the user's cache
/// directory (`~/.cache/tumornet/kernels` on Linux), else `./.tumornet-kernels`.
pub fn kernel_cache_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("TUMORNET_KERNEL_CACHE") {
        return dir.into();
    }
    dirs::cache_dir()
        .map(|d| d.join("tumornet").join("kernels"))
        .unwrap_or_else(|| ".tumornet-kernels".into())
}

#[cfg(any(feature = "vulkan", feature = "cuda"))]
fn configure_kernel_cache() {
    use burn::cubecl::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};
    // A cubecl.toml the user wrote wins for everything else; we only switch the kernel cache on and, where the
    // file left the location at its default (the Cargo project's target/), move it to the user's cache.
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.compilation.cache = true;
    if matches!(config.environment.path, CacheConfig::Target) {
        config.environment.path = CacheConfig::Directory(kernel_cache_dir());
    }
    tracing::info!(
        "GPU kernel cache: {} (the first run compiles kernels, which can take minutes; later runs reuse them)",
        config.environment.path.root().display()
    );
    if !CubeClRuntimeConfig::try_set(config) {
        tracing::debug!(
            "CubeCL configuration was already loaded; kernel cache settings left as they are"
        );
    }
}

#[cfg(not(any(feature = "vulkan", feature = "cuda")))]
fn configure_kernel_cache() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the host-side read, `to_device` leaves lazy parameters uninitialised (to be drawn later on the
    /// target device); with it every parameter arrives with its value.
    #[test]
    fn modules_leave_the_host_initialised() {
        struct Count {
            initialised: usize,
            lazy: usize,
        }
        impl burn::module::ModuleVisitor for Count {
            fn visit_float<const D: usize>(
                &mut self,
                param: &burn::module::Param<burn::tensor::Tensor<D>>,
            ) {
                if param.is_initialized() {
                    self.initialised += 1;
                } else {
                    self.lazy += 1;
                }
            }
        }
        let count = |m: &crate::model::ResNet18| {
            let mut c = Count {
                initialised: 0,
                lazy: 0,
            };
            m.visit(&mut c);
            (c.initialised, c.lazy)
        };
        use burn::module::Module;
        let fresh = crate::model::ResNet18::new(4, &host());
        let (_, lazy) = count(&fresh);
        assert!(
            lazy > 0,
            "burn no longer initialises lazily: from_host may be unnecessary"
        );
        let moved = from_host(fresh, &inference());
        // 62 parameters and the 2 × 20 BatchNorm running statistics.
        assert_eq!(count(&moved), (62 + 40, 0));
    }

    #[test]
    fn half_precision_and_matmul_convolutions_apply_to_gpu_backends_only() {
        configure(Precision::F16, GpuConv::Matmul);
        // This process computes on the CPU (no test selects another backend): both requests are ignored.
        assert_eq!(backend(), Backend::Cpu);
        assert_eq!(precision(), Precision::F32);
        assert!(!gpu_matmul_convolutions());
        assert_eq!(ignored_options(Precision::F16, GpuConv::Matmul).len(), 2);
        assert!(ignored_options(Precision::F32, GpuConv::Native).is_empty());
        assert!(Backend::LibtorchCuda.is_gpu() && !Backend::LibtorchCuda.is_cubecl());
        assert!(Backend::Vulkan.is_cubecl() && !Backend::Libtorch.is_gpu());
    }

    #[test]
    fn a_runtime_error_is_cut_at_its_first_line_break() {
        let torch = r#"called `Result::unwrap()` on an `Err` value: Torch("Found no NVIDIA driver\nException raised from device_count_impl\nframe #0")"#;
        assert_eq!(
            first_line(torch),
            r#"called `Result::unwrap()` on an `Err` value: Torch("Found no NVIDIA driver"#
        );
        assert_eq!(first_line("no adapter\nat line 3"), "no adapter");
        assert_eq!(first_line("no adapter"), "no adapter");
    }

    #[test]
    fn cpu_is_always_available_and_gpu_needs_its_feature() {
        assert!(Backend::Cpu.compiled_in());
        // A GPU backend this build lacks is refused by `select`, naming the feature to build with.
        if !cfg!(feature = "vulkan") {
            let err = select(Backend::Vulkan).expect_err("vulkan is not built in");
            assert!(err.to_string().contains("--features vulkan"), "{err}");
        }
        if !cfg!(feature = "cuda") {
            let err = select(Backend::Cuda).expect_err("cuda is not built in");
            assert!(err.to_string().contains("--features cuda"), "{err}");
        }
        if !cfg!(feature = "tch") {
            let err = select(Backend::LibtorchCuda).expect_err("tch is not built in");
            assert!(err.to_string().contains("--features tch"), "{err}");
            assert!(err.to_string().contains("`libtorch-cuda` backend"), "{err}");
        }
    }
}
