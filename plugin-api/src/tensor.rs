//! Tensors crossing the plugin boundary as opaque libtorch handles.
//!
//! Ownership is explicit: a [`TensorRef`] is borrowed (the receiver must not free it), a
//! [`TensorOwned`] is moved (the receiver frees it exactly once, by turning it back into a
//! [`tch::Tensor`] or dropping it). Both sides share one libtorch, so a handle made on one side is
//! valid on the other.
use abi_stable::StableAbi;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use tch::Tensor;

/// A borrowed tensor handle, valid for `'a`.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct TensorRef<'a> {
    ptr: *mut c_void,
    _borrow: PhantomData<&'a ()>,
}

impl<'a> TensorRef<'a> {
    /// Borrows `t` for the duration of a call.
    pub fn new(t: &'a Tensor) -> Self {
        Self { ptr: t.as_ptr() as *mut c_void, _borrow: PhantomData }
    }

    /// A view of the borrowed tensor that never frees the handle.
    pub fn view(&self) -> ManuallyDrop<Tensor> {
        // SAFETY: the pointer came from a live `Tensor` borrowed for 'a; ManuallyDrop keeps
        // this view from freeing a handle it does not own.
        ManuallyDrop::new(unsafe { Tensor::from_ptr(self.ptr as *mut _) })
    }

    /// A new owned handle sharing storage and autograd identity with the borrowed tensor.
    pub fn shallow_clone(&self) -> Tensor {
        self.view().shallow_clone()
    }
}

/// Views a slice of borrowed handles as tensors without touching reference counts.
pub fn view_slice(refs: &[TensorRef<'_>]) -> Vec<ManuallyDrop<Tensor>> {
    refs.iter().map(|r| r.view()).collect()
}

/// Reinterprets views as `&[Tensor]` so plugin code can take ordinary tensor slices.
pub fn as_tensor_slice(views: &[ManuallyDrop<Tensor>]) -> &[Tensor] {
    // SAFETY: ManuallyDrop<T> is #[repr(transparent)] over T, so the slices have one layout; the
    // views stay alive for the returned borrow and are never dropped as Tensors.
    unsafe { std::slice::from_raw_parts(views.as_ptr() as *const Tensor, views.len()) }
}

/// A moved tensor handle: whoever holds it owns the libtorch tensor and frees it once.
#[repr(transparent)]
#[derive(StableAbi)]
pub struct TensorOwned {
    ptr: *mut c_void,
}

// SAFETY: a libtorch tensor handle may move between threads (tch::Tensor is Send).
unsafe impl Send for TensorOwned {}

impl TensorOwned {
    /// Moves `t` into a handle.
    pub fn new(t: Tensor) -> Self {
        let mut t = ManuallyDrop::new(t);
        Self { ptr: t.as_mut_ptr() as *mut c_void }
    }

    /// Takes the tensor back; the handle is consumed, so it is freed exactly once.
    pub fn into_tensor(self) -> Tensor {
        let this = ManuallyDrop::new(self);
        // SAFETY: the pointer was produced by `new` from an owned Tensor and not freed since.
        unsafe { Tensor::from_ptr(this.ptr as *mut _) }
    }

    /// Borrows the owned tensor.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef { ptr: self.ptr, _borrow: PhantomData }
    }
}

impl Drop for TensorOwned {
    fn drop(&mut self) {
        // SAFETY: as in into_tensor; dropping the Tensor frees the handle once.
        drop(unsafe { Tensor::from_ptr(self.ptr as *mut _) });
    }
}

impl From<Tensor> for TensorOwned {
    fn from(t: Tensor) -> Self {
        Self::new(t)
    }
}

/// A named tensor handle (a parameter, an architecture weight, an optimizer buffer).
#[repr(C)]
#[derive(StableAbi)]
pub struct NamedTensor {
    pub name: abi_stable::std_types::RString,
    pub tensor: TensorOwned,
}
