//! The cross-entropy over labelled pixels only (partial labels): against a value computed by hand, against
//! PyTorch's `cross_entropy(..., ignore_index=255)` (the committed reference of
//! `scripts/research/pytorch_gradients.py --loss-reference`, and PyTorch itself when python3 has torch), on
//! the fused CPU kernels and on candle's own ops.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor, Var};
use trainer::ops::{self, Kernels, IGNORE_LABEL};

const KERNELS: [Kernels; 2] = [Kernels::Fast, Kernels::Reference];

/// (loss, d loss / d logits) of logits (n, classes, h, w) against labels.
fn loss_and_grad(
    logits: &[f32],
    shape: (usize, usize, usize, usize),
    labels: &[u32],
    k: Kernels,
) -> (f32, Vec<f32>) {
    let (n, _, h, w) = shape;
    let x = Var::from_tensor(&Tensor::from_vec(logits.to_vec(), shape, &Device::Cpu).unwrap()).unwrap();
    let y = Tensor::from_vec(labels.to_vec(), n * h * w, &Device::Cpu).unwrap();
    let loss = ops::segmentation_cross_entropy(x.as_tensor(), &y, k).unwrap();
    let grads = loss.backward().unwrap();
    let grad = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    (loss.to_scalar().unwrap(), grad)
}

#[test]
fn masked_loss_equals_the_hand_computed_mean_over_labelled_pixels() {
    // One 2x2 image, logits (class 0, class 1) per pixel and labels 0, 1, unlabelled, 1.
    let pixels = [(0.0f32, 0.0f32), (0.0, 2.0), (100.0, -100.0), (3.0, 0.0)];
    let mut logits = vec![0f32; 8];
    for (i, (a, b)) in pixels.iter().enumerate() {
        (logits[i], logits[4 + i]) = (*a, *b);
    }
    let labels = [0, 1, IGNORE_LABEL, 1];
    // ln 2; ln(1 + e^-2); (ignored); ln(1 + e^3): their mean over the three labelled pixels.
    let terms = [2f64.ln(), (-2f64).exp().ln_1p(), 3f64.exp().ln_1p()];
    let mean = terms.iter().sum::<f64>() / 3.0;
    // softmax - one-hot, over 3: pixel 0 (0.5 - 1, 0.5), pixel 1 (s, -s) with s = 1 / (1 + e^2), pixel 3
    // (t, -t) with t = e^3 / (1 + e^3); the ignored pixel none.
    let (s, t) = (1.0 / (1.0 + 2f64.exp()), 3f64.exp() / (1.0 + 3f64.exp()));
    let want = [-0.5, s, 0.0, t, 0.5, -s, 0.0, -t].map(|g| g / 3.0);
    for k in KERNELS {
        let (loss, grad) = loss_and_grad(&logits, (1, 2, 2, 2), &labels, k);
        assert!((loss as f64 - mean).abs() < 1e-6, "{k:?}: loss {loss}, by hand {mean}");
        for (i, (g, w)) in grad.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() < 1e-6, "{k:?}: gradient {i} is {g}, by hand {w}");
        }
        // Nothing labelled: 0 and a zero gradient, not NaN (0 / 0).
        let (loss, grad) = loss_and_grad(&logits, (1, 2, 2, 2), &[IGNORE_LABEL; 4], k);
        assert_eq!(loss, 0.0, "{k:?}");
        assert!(grad.iter().all(|&g| g == 0.0), "{k:?}: {grad:?}");
    }
}

/// Fully labelled batches run the code they ran before partial labels: the fused loss equals candle's
/// cross-entropy within rounding, and the same labels give the same bits through either entry.
#[test]
fn dense_labels_keep_the_dense_loss() {
    let shape = (2, 2, 6, 10);
    let logits: Vec<f32> = (0..240).map(|i| ((i as f64 * 0.37).sin() * 4.0) as f32).collect();
    let labels: Vec<u32> = (0..120).map(|i| (i * 7 % 5 < 2) as u32).collect();
    let x = Tensor::from_vec(logits.clone(), shape, &Device::Cpu).unwrap();
    let flat = x.permute((0, 2, 3, 1)).unwrap().reshape((120, 2)).unwrap();
    let y = Tensor::from_vec(labels.clone(), 120, &Device::Cpu).unwrap();
    let candle: f32 = candle_nn::loss::cross_entropy(&flat, &y).unwrap().to_scalar().unwrap();
    let (fast, _) = loss_and_grad(&logits, shape, &labels, Kernels::Fast);
    let (reference, _) = loss_and_grad(&logits, shape, &labels, Kernels::Reference);
    assert_eq!(reference.to_bits(), candle.to_bits(), "the reference path is candle's cross-entropy");
    assert!((fast - candle).abs() < 1e-6, "{fast} vs {candle}");
}

/// The reference: shape, logits, labels, loss and gradient, as the script writes it.
struct Reference {
    shape: (usize, usize, usize, usize),
    logits: Vec<f32>,
    labels: Vec<u32>,
    loss: f64,
    grad: Vec<f64>,
}

fn read_reference(path: &Path) -> Reference {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats =
        |k: &str| -> Vec<f64> { v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let s: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    assert_eq!(v["ignore_index"].as_u64(), Some(IGNORE_LABEL as u64), "the script's ignore_index");
    Reference {
        shape: (s[0], s[1], s[2], s[3]),
        logits: floats("logits").into_iter().map(|x| x as f32).collect(),
        labels: v["labels"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
        loss: v["loss"].as_f64().unwrap(),
        grad: floats("grad"),
    }
}

fn compare(reference: &Reference, source: &str) {
    let ignored = reference.labels.iter().filter(|&&t| t == IGNORE_LABEL).count();
    assert!(ignored > 0 && ignored < reference.labels.len(), "{source}: a partial batch");
    for k in KERNELS {
        let (loss, grad) = loss_and_grad(&reference.logits, reference.shape, &reference.labels, k);
        assert!(
            (loss as f64 - reference.loss).abs() < 1e-5,
            "{k:?}: loss {loss}, {source} {}",
            reference.loss
        );
        let scale = reference.grad.iter().fold(0f64, |m, g| m.max(g.abs()));
        for (i, (g, r)) in grad.iter().zip(&reference.grad).enumerate() {
            assert!((*g as f64 - r).abs() <= 1e-5 * scale, "{k:?}: gradient {i} is {g}, {source} {r}");
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/research/pytorch_gradients.py")
}

#[test]
fn masked_loss_and_gradient_equal_pytorch_ignore_index() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/masked_loss_torch.json");
    compare(&read_reference(&committed), "committed PyTorch reference");
    // PyTorch itself where python3 has it (the venv of $SEGMENTER_TORCH_PYTHON, else python3).
    let python = std::env::var("SEGMENTER_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch =
        Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        eprintln!("note: {python} has no torch: compared with the committed reference only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.json");
    let out = Command::new(&python).arg(script()).arg("--loss-reference").arg(&fresh).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    compare(&read_reference(&fresh), "PyTorch");
}
