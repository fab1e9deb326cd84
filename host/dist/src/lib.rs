//! Collectives for data-parallel training on libtorch's own engine, c10d: a TCPStore rendezvous
//! and a Gloo process group, reached through a small C++ shim (libtorch has no C API for them
//! and tch does not wrap them). Every failure comes back as a [`DistError`] carrying c10d's
//! message: a peer that died makes the next collective fail with "Connection closed by peer",
//! one that never joins makes the rendezvous fail after the timeout.
//!
//! Workers find each other through torchrun's environment variables ([`WorldEnv`]), so a
//! worker started by `archai launch`, by torchrun or by a batch scheduler joins the same way.
use std::ffi::{c_char, c_int, c_longlong, c_void, CString};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::IntoRawFd;
use std::time::Duration;
use tch::Tensor;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn archai_dist_init(
        host: *const c_char,
        port: c_int,
        listen_fd: c_int,
        rank: c_int,
        size: c_int,
        timeout_ms: c_longlong,
        gloo_host: *const c_char,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn archai_dist_free(group: *mut c_void);
    fn archai_dist_allreduce_sum(group: *mut c_void, tensor: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn archai_dist_broadcast(
        group: *mut c_void,
        tensor: *mut c_void,
        root: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn archai_dist_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn archai_dist_store_set(
        group: *mut c_void,
        key: *const c_char,
        data: *const u8,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn archai_dist_store_get(
        group: *mut c_void,
        key: *const c_char,
        data: *mut *mut u8,
        len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn archai_dist_free_bytes(data: *mut u8);
    #[allow(clippy::too_many_arguments)]
    fn archai_dist_reducer_new(
        group: *mut c_void,
        params: *const *mut c_void,
        n: usize,
        order: *const usize,
        cap_elements: c_longlong,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn archai_dist_reducer_free(reducer: *mut c_void);
    fn archai_dist_reducer_rebuild_in_rank0_order(
        reducer: *mut c_void,
        cap_elements: c_longlong,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn archai_dist_reducer_arm(reducer: *mut c_void, loss: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn archai_dist_reducer_finish(
        reducer: *mut c_void,
        extras: *mut c_void,
        ready_order: *mut usize,
        overlapped: *mut usize,
        buckets: *mut usize,
        reduced_again: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("distributed environment: {0}")]
    Env(String),
    #[error(
        "rank {rank} of {world} could not join the rendezvous at {addr}: {message} (are all {world} workers \
         started, with the same MASTER_ADDR and MASTER_PORT?)"
    )]
    Rendezvous { rank: usize, world: usize, addr: String, message: String },
    #[error("rank {rank} of {world}: {what} failed: {message} ({})", lost_peer(*.rank, *.world))]
    Collective { rank: usize, world: usize, what: &'static str, message: String },
    #[error("rank {rank}: {0}", rank = .1)]
    Usage(String, usize),
}

/// Who a failed collective lost: with two ranks, the other one.
fn lost_peer(rank: usize, world: usize) -> String {
    match world {
        2 => format!("rank {} exited or stopped answering", 1 - rank),
        _ => "a peer rank exited or stopped answering; the launcher's report names it".into(),
    }
}

/// The variables by which torchrun (and `archai launch`) place a worker in a job.
pub const WORLD_VARS: [&str; 6] =
    ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"];

/// Makes `cmd` start a process of its own, not one more worker of this job: a worker that starts
/// single-process children (a comparison's runs, a search's candidate trainings) removes
/// [`WORLD_VARS`] from them.
pub fn outside_the_job(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for var in WORLD_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Where this worker stands in the job, as torchrun's variables say: RANK, LOCAL_RANK,
/// WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldEnv {
    pub rank: usize,
    pub local_rank: usize,
    pub world: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl WorldEnv {
    /// The variables of this process; `None` when WORLD_SIZE is unset (a single-process run).
    pub fn from_env() -> Result<Option<Self>, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The same from any variable lookup (tests, launchers).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DistError> {
        let Some(world) = var("WORLD_SIZE") else { return Ok(None) };
        let num = |key: &str, value: &str| {
            value.trim().parse::<usize>().map_err(|_| DistError::Env(format!("{key}={value:?} is not a whole number")))
        };
        let world = num("WORLD_SIZE", &world)?;
        let rank =
            num("RANK", &var("RANK").ok_or_else(|| DistError::Env("WORLD_SIZE is set but RANK is not".into()))?)?;
        let local_rank = match var("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", &v)?,
            None => rank,
        };
        if world == 0 || rank >= world {
            return Err(DistError::Env(format!(
                "RANK={rank} must be below WORLD_SIZE={world} (and WORLD_SIZE positive)"
            )));
        }
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = var("MASTER_PORT").unwrap_or_else(|| "29500".into());
        let master_port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| DistError::Env(format!("MASTER_PORT={port:?} is not a port number (1-65535)")))?;
        Ok(Some(Self { rank, local_rank, world, master_addr, master_port }))
    }

    fn master_socket(&self) -> Result<SocketAddr, DistError> {
        (self.master_addr.as_str(), self.master_port)
            .to_socket_addrs()
            .map_err(|e| DistError::Env(format!("MASTER_ADDR={}: {e}", self.master_addr)))?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| DistError::Env(format!("MASTER_ADDR={} has no IPv4 address", self.master_addr)))
    }
}

const ERR_LEN: usize = 2048;

fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}

/// A joined process group: rank `rank` of `world`, with the store for small objects.
pub struct ProcessGroup {
    raw: *mut c_void,
    rank: usize,
    world: usize,
    /// Sequence number of the store-based exchanges, equal on every rank because every rank
    /// makes the same calls in the same order.
    exchanges: std::cell::Cell<u64>,
}

// SAFETY: the group is used from one thread at a time (`&mut`-free API but not Sync); c10d
// backends may be moved between threads.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the job this process was started into (torchrun's variables), or `None` when it was
    /// started alone (no WORLD_SIZE, or a world of one).
    pub fn join_from_env(timeout: Duration) -> Result<Option<Self>, DistError> {
        match WorldEnv::from_env()? {
            Some(env) if env.world > 1 => Self::join(&env, timeout).map(Some),
            _ => Ok(None),
        }
    }

    /// Joins the job: rank 0 serves the store on MASTER_ADDR:MASTER_PORT (loopback by default,
    /// and only that address: c10d's own server would listen on every interface), everybody
    /// connects to it, and a Gloo group forms over the same interface. Fails after `timeout`
    /// when a rank does not arrive; collectives fail after `timeout` too.
    pub fn join(env: &WorldEnv, timeout: Duration) -> Result<Self, DistError> {
        let addr = env.master_socket()?;
        let rendezvous = |message: String| DistError::Rendezvous {
            rank: env.rank,
            world: env.world,
            addr: addr.to_string(),
            message,
        };
        let listen_fd = if env.rank == 0 {
            let listener = TcpListener::bind(addr).map_err(|e| {
                rendezvous(format!("rank 0 cannot listen on {addr}: {e} (another job on this port? set MASTER_PORT)"))
            })?;
            listener.into_raw_fd()
        } else {
            -1
        };
        // Gloo binds to the interface the rendezvous uses when that is loopback (the default
        // device resolves the hostname and may pick another interface); GLOO_SOCKET_IFNAME is
        // honoured by Gloo itself otherwise.
        let gloo_host = if addr.ip().is_loopback() {
            addr.ip().to_string()
        } else if std::env::var_os("GLOO_SOCKET_IFNAME").is_some() {
            String::new()
        } else {
            local_address_towards(addr).map(|ip| ip.to_string()).unwrap_or_default()
        };
        let host = CString::new(addr.ip().to_string()).expect("an IP address has no NUL");
        let gloo = CString::new(gloo_host).expect("an IP address has no NUL");
        let mut err = vec![0u8; ERR_LEN];
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C strings and buffers for the call's duration; on success `raw` owns a
        // Group released in Drop. The shim takes over `listen_fd`.
        let rc = unsafe {
            archai_dist_init(
                host.as_ptr(),
                addr.port() as c_int,
                listen_fd,
                env.rank as c_int,
                env.world as c_int,
                timeout.as_millis().min(i64::MAX as u128) as c_longlong,
                gloo.as_ptr(),
                &mut raw,
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        if rc != 0 {
            return Err(rendezvous(message(&err)));
        }
        Ok(Self { raw, rank: env.rank, world: env.world, exchanges: std::cell::Cell::new(0) })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    fn call(&self, what: &'static str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), DistError> {
        let mut err = vec![0u8; ERR_LEN];
        if f(err.as_mut_ptr() as *mut c_char, err.len()) != 0 {
            return Err(DistError::Collective { rank: self.rank, world: self.world, what, message: message(&err) });
        }
        Ok(())
    }

    fn check_flat(&self, t: &Tensor, what: &str) -> Result<(), DistError> {
        if !t.is_contiguous() || t.device() != tch::Device::Cpu {
            return Err(DistError::Usage(
                format!("{what} needs a contiguous CPU tensor (Gloo), got {:?} on {:?}", t.size(), t.device()),
                self.rank,
            ));
        }
        Ok(())
    }

    /// Sums `t` over the ranks in place (every rank ends with the sum).
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), DistError> {
        self.check_flat(t, "all-reduce")?;
        let raw = self.raw;
        let tensor = t.as_mut_ptr() as *mut c_void;
        // SAFETY: `tensor` is the live at::Tensor behind `t`; the call completes before return.
        self.call("all-reduce", |e, n| unsafe { archai_dist_allreduce_sum(raw, tensor, e, n) })
    }

    /// Overwrites `t` on every rank with rank `root`'s values.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.check_flat(t, "broadcast")?;
        let raw = self.raw;
        let tensor = t.as_mut_ptr() as *mut c_void;
        // SAFETY: as in all_reduce_sum.
        self.call("broadcast", |e, n| unsafe { archai_dist_broadcast(raw, tensor, root as c_int, e, n) })
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        let raw = self.raw;
        // SAFETY: plain call on a live group.
        self.call("barrier", |e, n| unsafe { archai_dist_barrier(raw, e, n) })
    }

    fn store_set(&self, key: &str, bytes: &[u8]) -> Result<(), DistError> {
        let key = CString::new(key).expect("store keys are built without NUL");
        let raw = self.raw;
        // SAFETY: key and bytes outlive the call.
        self.call("store set", |e, n| unsafe {
            archai_dist_store_set(raw, key.as_ptr(), bytes.as_ptr(), bytes.len(), e, n)
        })
    }

    fn store_get(&self, key: &str) -> Result<Vec<u8>, DistError> {
        let key = CString::new(key).expect("store keys are built without NUL");
        let raw = self.raw;
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: on success the shim hands over a malloc'd buffer of `len` bytes, copied and
        // freed here.
        self.call("store get", |e, n| unsafe { archai_dist_store_get(raw, key.as_ptr(), &mut data, &mut len, e, n) })?;
        let out = unsafe { std::slice::from_raw_parts(data, len).to_vec() };
        unsafe { archai_dist_free_bytes(data) };
        Ok(out)
    }

    fn next_exchange(&self) -> u64 {
        let n = self.exchanges.get();
        self.exchanges.set(n + 1);
        n
    }

    /// Every rank's `bytes`, in rank order (small objects: names, hashes, paths).
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        let n = self.next_exchange();
        self.store_set(&format!("gather/{n}/{}", self.rank), bytes)?;
        (0..self.world).map(|r| self.store_get(&format!("gather/{n}/{r}"))).collect()
    }

    /// Rank `root`'s `bytes` on every rank (the others' argument is ignored).
    pub fn broadcast_bytes(&self, root: usize, bytes: &[u8]) -> Result<Vec<u8>, DistError> {
        let n = self.next_exchange();
        let key = format!("bcast/{n}");
        if self.rank == root {
            self.store_set(&key, bytes)?;
            Ok(bytes.to_vec())
        } else {
            self.store_get(&key)
        }
    }
}

/// Sums the gradients of a fixed list of parameters over the ranks while the backward pass runs:
/// each parameter's gradient accumulator gets a hook, and a bucket of parameters whose gradients
/// are all complete leaves as an asynchronous all-reduce (on Gloo's thread) while the backward
/// goes on. Buckets leave in one order on every rank. Between [`GradReducer::arm`] and
/// [`GradReducer::finish`] exactly one backward may run (the step's last; earlier ones, such as
/// the other batch chunks, accumulate as usual).
///
/// On two ranks the sums are bit for bit those of [`ProcessGroup::all_reduce_sum`] on the same
/// gradients (each element is one addition); on more, Gloo's ring adds each segment in an order
/// that depends on where the element falls in its bucket, so bucket layouts agree to float
/// rounding (every rank still ends with the same sums).
pub struct GradReducer {
    raw: *mut c_void,
    rank: usize,
    world: usize,
    params: usize,
    /// The parameters, kept alive as long as the hooks that point at them.
    _params: Vec<Tensor>,
}

/// What one step of a [`GradReducer`] did.
pub struct ReduceStep {
    /// Parameter indices in the order their gradients became complete in the backward, the
    /// ones it did not reach placed where a backward likely meets them (before the first reached
    /// parameter of a lower index): the bucket order a rebuild takes from rank 0.
    pub ready_order: Vec<usize>,
    /// Buckets that left while gradients were still being computed (before the backward or
    /// during it, not after its last gradient): the ones whose sum overlapped computation.
    pub overlapped: usize,
    /// Buckets in all.
    pub buckets: usize,
    /// A gradient was accumulated twice in the armed backward (on some rank), so every bucket
    /// was summed again after it: correct, but nothing overlapped.
    pub reduced_again: bool,
}

impl GradReducer {
    /// Hooks `params` (leaves that require grad, in the same order on every rank) and buckets
    /// them in `order` into buckets of at most `cap_elements` elements.
    pub fn new(group: &ProcessGroup, params: &[Tensor], order: &[usize], cap_elements: i64) -> Result<Self, DistError> {
        check_order(order, params.len(), group.rank)?;
        let mut kept: Vec<Tensor> = params.iter().map(Tensor::shallow_clone).collect();
        let ptrs: Vec<*mut c_void> = kept.iter_mut().map(|t| t.as_mut_ptr() as *mut c_void).collect();
        let mut raw = std::ptr::null_mut();
        let g = group.raw;
        // SAFETY: the pointers are live at::Tensors for the call; the shim copies them (the
        // tensors share storage and autograd metadata with `params`).
        group.call("gradient reducer setup", |e, n| unsafe {
            archai_dist_reducer_new(g, ptrs.as_ptr(), ptrs.len(), order.as_ptr(), cap_elements, &mut raw, e, n)
        })?;
        Ok(Self { raw, rank: group.rank, world: group.world, params: params.len(), _params: kept })
    }

    fn call(&self, what: &'static str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), DistError> {
        let mut err = vec![0u8; ERR_LEN];
        if f(err.as_mut_ptr() as *mut c_char, err.len()) != 0 {
            return Err(DistError::Collective { rank: self.rank, world: self.world, what, message: message(&err) });
        }
        Ok(())
    }

    /// Re-buckets every rank in the order rank 0's last finished step completed its gradients
    /// in (a collective: every rank calls it), so that each bucket fills in one stretch of the
    /// backward. Bucket sizes stay `cap_elements`.
    pub fn rebuild_in_rank0_order(&self, cap_elements: i64) -> Result<(), DistError> {
        let raw = self.raw;
        // SAFETY: a live reducer.
        self.call("gradient bucket order broadcast", |e, n| unsafe {
            archai_dist_reducer_rebuild_in_rank0_order(raw, cap_elements, e, n)
        })
    }

    /// The next backward, that of `loss`, launches buckets as their gradients complete; the
    /// parameters `loss`'s graph does not reach already hold their final gradients (from the
    /// step's earlier backwards, or none), so their buckets leave now.
    pub fn arm(&self, loss: &Tensor) -> Result<(), DistError> {
        let raw = self.raw;
        let mut loss = loss.shallow_clone();
        let t = loss.as_mut_ptr() as *mut c_void;
        // SAFETY: a live reducer and a live at::Tensor for the call.
        self.call("gradient all-reduce", |e, n| unsafe { archai_dist_reducer_arm(raw, t, e, n) })
    }

    /// Completes the step armed before: sends what the backward left, sums `extras` over the
    /// ranks with the gradients (in f64), waits, and leaves the summed gradients in the
    /// parameters' `.grad` (a gradient this rank did not produce counts as zeros and stays
    /// undefined).
    pub fn finish(&self, extras: &mut [f64]) -> Result<ReduceStep, DistError> {
        let mut figures = Tensor::from_slice(&[&extras[..], &[0.0][..]].concat());
        let mut order = vec![0usize; self.params];
        let (mut overlapped, mut buckets, mut again) = (0usize, 0usize, 0 as c_int);
        let raw = self.raw;
        let t = figures.as_mut_ptr() as *mut c_void;
        // SAFETY: a live reducer; `figures` is a contiguous f64 CPU tensor and `order` has room
        // for every parameter index.
        self.call("gradient all-reduce", |e, n| unsafe {
            archai_dist_reducer_finish(raw, t, order.as_mut_ptr(), &mut overlapped, &mut buckets, &mut again, e, n)
        })?;
        let summed = Vec::<f64>::try_from(&figures).map_err(|e| DistError::Usage(e.to_string(), self.rank))?;
        extras.copy_from_slice(&summed[..extras.len()]);
        Ok(ReduceStep { ready_order: order, overlapped, buckets, reduced_again: again != 0 })
    }
}

fn check_order(order: &[usize], n: usize, rank: usize) -> Result<(), DistError> {
    let mut seen = vec![false; n];
    let each_once = order.len() == n && order.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
    match each_once {
        true => Ok(()),
        false => Err(DistError::Usage(format!("a bucket order must name each of the {n} parameters once"), rank)),
    }
}

impl Drop for GradReducer {
    fn drop(&mut self) {
        // SAFETY: `raw` came from archai_dist_reducer_new and is released once; this removes the
        // hooks from the accumulators.
        unsafe { archai_dist_reducer_free(self.raw) }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from archai_dist_init and is released once.
        unsafe { archai_dist_free(self.raw) }
    }
}

/// The local address this machine would use to reach `peer` (no packet is sent: connecting a
/// UDP socket only chooses a route).
fn local_address_towards(peer: SocketAddr) -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect(peer).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// A free TCP port on loopback right now (for launchers and tests; it may be taken again
/// before use, so a launcher retries on a bind failure).
pub fn free_loopback_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_environment_is_read_like_torchrun_writes_it() {
        assert_eq!(WorldEnv::from_vars(vars(&[])).unwrap(), None);
        let env = WorldEnv::from_vars(vars(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "1234"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((env.rank, env.local_rank, env.world, env.master_port), (3, 1, 4, 1234));
        let defaults = WorldEnv::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "0")])).unwrap().unwrap();
        assert_eq!((defaults.master_addr.as_str(), defaults.master_port, defaults.local_rank), ("127.0.0.1", 29500, 0));
        for bad in [
            vec![("WORLD_SIZE", "2")],
            vec![("WORLD_SIZE", "2"), ("RANK", "2")],
            vec![("WORLD_SIZE", "two"), ("RANK", "0")],
            vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "0")],
        ] {
            let e = WorldEnv::from_vars(vars(&bad)).unwrap_err().to_string();
            assert!(e.starts_with("distributed environment:"), "{e}");
        }
    }

    fn single(port: u16) -> ProcessGroup {
        let env = WorldEnv { rank: 0, local_rank: 0, world: 1, master_addr: "127.0.0.1".into(), master_port: port };
        ProcessGroup::join(&env, Duration::from_secs(20)).expect("a one-rank group forms")
    }

    /// /proc/net/tcp lists listening sockets as `local_address` hex `IP:PORT` with state 0A.
    fn listening_addresses(port: u16) -> Vec<String> {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable on Linux");
        table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let (ip, p) = cols.get(1)?.split_once(':')?;
                (cols.get(3) == Some(&"0A") && u16::from_str_radix(p, 16).ok()? == port).then(|| ip.to_string())
            })
            .collect()
    }

    #[test]
    fn the_store_listens_on_loopback_only_by_default() {
        let port = free_loopback_port().unwrap();
        let group = single(port);
        let addrs = listening_addresses(port);
        // 0100007F is 127.0.0.1; 00000000 would be every interface (c10d's own default).
        assert_eq!(addrs, vec!["0100007F".to_string()], "listening sockets on port {port}");
        drop(group);
    }

    #[test]
    fn a_one_rank_group_reduces_to_itself_and_exchanges_objects() {
        let group = single(free_loopback_port().unwrap());
        let mut t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        group.all_reduce_sum(&mut t).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, 2.0, 3.0]);
        group.broadcast(&mut t, 0).unwrap();
        group.barrier().unwrap();
        assert_eq!(group.all_gather_bytes(b"abc").unwrap(), vec![b"abc".to_vec()]);
        assert_eq!(group.broadcast_bytes(0, b"path").unwrap(), b"path".to_vec());
        let e = group.all_reduce_sum(&mut Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]).tr()).unwrap_err();
        assert!(e.to_string().contains("contiguous CPU tensor"), "{e}");
        // libtorch's flight recorder races when two groups of one process run collectives at
        // once (the two-rank tests here crashed with SIGSEGV); a group switches it off.
        assert_eq!(std::env::var("TORCH_FR_BUFFER_SIZE").as_deref(), Ok("0"));
    }

    #[test]
    fn a_rank_whose_peers_never_come_fails_after_the_timeout_naming_the_rendezvous() {
        let port = free_loopback_port().unwrap();
        let env = WorldEnv { rank: 0, local_rank: 0, world: 2, master_addr: "127.0.0.1".into(), master_port: port };
        let t0 = std::time::Instant::now();
        let e = ProcessGroup::join(&env, Duration::from_secs(2)).err().expect("nobody else joins").to_string();
        assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());
        assert!(e.contains("could not join the rendezvous") && e.contains(&port.to_string()), "{e}");
    }

    fn pair(timeout: Duration) -> (ProcessGroup, ProcessGroup) {
        let port = free_loopback_port().unwrap();
        let env = move |rank| WorldEnv {
            rank,
            local_rank: rank,
            world: 2,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        };
        let peer = std::thread::spawn(move || ProcessGroup::join(&env(1), timeout).expect("rank 1 joins"));
        let root = ProcessGroup::join(&env(0), timeout).expect("rank 0 joins");
        (root, peer.join().unwrap())
    }

    #[test]
    fn two_ranks_sum_broadcast_and_exchange_and_a_dead_peer_is_an_error_not_a_hang() {
        let (root, peer) = pair(Duration::from_secs(20));
        let other = std::thread::spawn(move || {
            let mut t = Tensor::from_slice(&[10.0f32, 20.0]);
            peer.all_reduce_sum(&mut t).unwrap();
            let mut b = Tensor::from_slice(&[0.0f64; 3]);
            peer.broadcast(&mut b, 0).unwrap();
            let gathered = peer.all_gather_bytes(b"one").unwrap();
            let path = peer.broadcast_bytes(0, b"ignored").unwrap();
            (Vec::<f32>::try_from(&t).unwrap(), Vec::<f64>::try_from(&b).unwrap(), gathered, path)
            // Dropping `peer` here is rank 1 dying.
        });
        let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
        root.all_reduce_sum(&mut t).unwrap();
        let mut b = Tensor::from_slice(&[1.0f64, 2.0, 3.0]);
        root.broadcast(&mut b, 0).unwrap();
        let gathered = root.all_gather_bytes(b"zero").unwrap();
        root.broadcast_bytes(0, b"/runs/x").unwrap();
        let (t1, b1, g1, path) = other.join().unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![11.0, 22.0]);
        assert_eq!(t1, vec![11.0, 22.0]);
        assert_eq!(b1, vec![1.0, 2.0, 3.0]);
        assert_eq!(gathered, vec![b"zero".to_vec(), b"one".to_vec()]);
        assert_eq!(g1, gathered);
        assert_eq!(path, b"/runs/x".to_vec());
        let t0 = std::time::Instant::now();
        let e = root.all_reduce_sum(&mut Tensor::from_slice(&[1.0f32])).unwrap_err().to_string();
        assert!(t0.elapsed() < Duration::from_secs(19), "waited {:?} for a dead peer", t0.elapsed());
        assert!(e.contains("rank 0 of 2: all-reduce failed") && e.contains("peer"), "{e}");
    }

    /// Five parameters and a rank-dependent input: rank 0's loss reaches parameters 0..4, rank
    /// 1's only 0..3; neither reaches parameter 4.
    fn chain(rank: usize) -> (Vec<Tensor>, Tensor) {
        let params: Vec<Tensor> = (0..5)
            .map(|i| Tensor::from_slice(&[0.5f32 + i as f32, -1.0, 2.0 - i as f32]).set_requires_grad(true))
            .collect();
        let x = Tensor::from_slice(&[1.0f32 + rank as f32, 3.0, -2.0 * rank as f32]);
        (params, x)
    }

    fn reached(rank: usize) -> usize {
        4 - rank
    }

    fn loss_of(params: &[Tensor], x: &Tensor, rank: usize) -> Tensor {
        let mut h = x.shallow_clone();
        for p in &params[..reached(rank)] {
            h = (&h * p).tanh() + p;
        }
        h.sum(tch::Kind::Float)
    }

    /// Runs two reduced steps on a rank (the second in rank 0's ready order, as the trainer
    /// does): `backwards` backward passes after arming (1 is the contract; 2 exercises the
    /// accumulated-twice fallback). Returns the second step's reduced gradients (None for an
    /// undefined one), figures and report.
    fn reduced_step(group: &ProcessGroup, backwards: usize, cap: i64) -> (Vec<Option<Vec<f32>>>, Vec<f64>, ReduceStep) {
        let rank = group.rank();
        let (params, x) = chain(rank);
        let order: Vec<usize> = (0..params.len()).collect();
        let reducer = GradReducer::new(group, &params, &order, cap).unwrap();
        let mut figures = vec![rank as f64 + 1.0, 0.5];
        let mut step = None;
        for round in 0..2 {
            for p in &params {
                p.shallow_clone().zero_grad();
            }
            let loss = loss_of(&params, &x, rank);
            reducer.arm(&loss).unwrap();
            for b in 0..backwards {
                match b {
                    0 => loss.backward(),
                    _ => loss_of(&params, &x, rank).backward(),
                }
            }
            if round == 0 {
                reducer.finish(&mut figures.clone()).unwrap();
                reducer.rebuild_in_rank0_order(cap).unwrap();
            } else {
                step = Some(reducer.finish(&mut figures).unwrap());
            }
        }
        let grads = params
            .iter()
            .map(|p| {
                let g = p.grad();
                g.defined().then(|| Vec::<f32>::try_from(&g).unwrap())
            })
            .collect();
        (grads, figures, step.unwrap())
    }

    /// Each rank's gradients computed alone, summed by hand over the ranks that reach them.
    fn expected_sums(backwards: usize) -> Vec<Vec<f32>> {
        let mut total = vec![vec![0.0f32; 3]; 4];
        for rank in 0..2 {
            let (params, x) = chain(rank);
            for _ in 0..backwards {
                loss_of(&params, &x, rank).backward();
            }
            for (t, p) in total.iter_mut().zip(&params[..reached(rank)]) {
                for (a, b) in t.iter_mut().zip(Vec::<f32>::try_from(&p.grad()).unwrap()) {
                    *a += b;
                }
            }
        }
        total
    }

    #[test]
    fn the_reducer_sums_gradients_during_the_backward_in_rank_0s_ready_order() {
        for (backwards, cap) in [(1, 3), (1, 1 << 20), (2, 3)] {
            let (root, peer) = pair(Duration::from_secs(20));
            let other = std::thread::spawn(move || reduced_step(&peer, backwards, cap));
            let (grads, figures, step) = reduced_step(&root, backwards, cap);
            let (grads1, figures1, step1) = other.join().unwrap();
            let case = format!("{backwards} backward(s), buckets of {cap}");
            let expected = expected_sums(backwards);
            for (i, e) in expected.iter().enumerate() {
                let got = grads[i].as_ref().expect("a reached parameter keeps its gradient");
                for (a, b) in got.iter().zip(e) {
                    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "param {i}: {got:?} vs {e:?} ({case})");
                }
                // Rank 1 did not reach parameter 3: it keeps no gradient there.
                let theirs = if i < reached(1) { Some(got) } else { None };
                assert_eq!(grads1[i].as_ref(), theirs, "rank 1's param {i} ({case})");
            }
            assert_eq!((&grads[4], &grads1[4]), (&None, &None), "nobody reached parameter 4");
            assert_eq!(figures, vec![3.0, 1.0]);
            assert_eq!(figures1, figures);
            // Gradients complete from the last layer back; unreached ones go where their index
            // puts them.
            assert_eq!(step.ready_order, vec![4, 3, 2, 1, 0]);
            assert_eq!(step1.ready_order, vec![4, 3, 2, 1, 0]);
            assert_eq!(step.buckets, if cap == 3 { 5 } else { 1 });
            // One parameter a bucket, in rank 0's order: 4's leaves at once (nobody reaches it;
            // rank 1 sends 3's at once too), 3's, 2's and 1's while later gradients are still
            // computed; 0's completes the backward. One bucket for all overlaps nothing.
            let overlapped = if cap == 3 { 4 } else { 0 };
            assert_eq!((step.overlapped, step1.overlapped), (overlapped, overlapped), "{case}");
            assert_eq!((step.reduced_again, step1.reduced_again), (backwards > 1, backwards > 1), "{case}");
        }
    }

    #[test]
    fn a_reducer_that_was_not_armed_says_so() {
        let group = single(free_loopback_port().unwrap());
        let (params, _) = chain(0);
        let reducer = GradReducer::new(&group, &params, &[0, 1, 2, 3, 4], 3).unwrap();
        let e = reducer.finish(&mut [1.0]).err().expect("finish before arm is an error").to_string();
        assert!(e.contains("not armed"), "{e}");
        let e = reducer.rebuild_in_rank0_order(3).expect_err("no step to take an order from").to_string();
        assert!(e.contains("no finished step"), "{e}");
        let e = GradReducer::new(&group, &params, &[0, 1, 2, 3], 3).err().expect("an order must be complete");
        assert!(e.to_string().contains("each of the 5 parameters once"), "{e}");
    }
}
