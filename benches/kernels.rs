//! SIMD kernels against their scalar twins, and a 1024-point spectrum through our operator
//! against a bare FFT call on the same data. Throughput is reported in bytes of `f32` input,
//! next to a memory copy of the same size as the bandwidth reference.
//!
//! `cargo bench --bench kernels`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use realfft::RealFftPlanner;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use stator_operators::simd::{Isa, Kernels};
use stator_operators::spectrum::{SpectrumPlan, WindowFn};

fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i as f32) * 0.013).sin() + 0.001 * (i % 97) as f32).collect()
}

fn reductions(c: &mut Criterion) {
    for n in [4_096usize, 65_536, 4_194_304] {
        let x = data(n);
        let mut g = c.benchmark_group(format!("reduce/{n}"));
        g.throughput(Throughput::Bytes((n * 4) as u64));
        for isa in Isa::all_supported() {
            let k = Kernels::with_isa(isa).expect("supported");
            g.bench_with_input(BenchmarkId::new("sums", isa.name()), &x, |b, x| b.iter(|| k.sums(black_box(x))));
            g.bench_with_input(BenchmarkId::new("central", isa.name()), &x, |b, x| {
                b.iter(|| k.central(black_box(x), 0.1))
            });
        }
        let mut dst = vec![0f32; n];
        g.bench_function("memcpy (bandwidth reference)", |b| b.iter(|| dst.copy_from_slice(black_box(&x))));
        g.finish();
    }
}

fn spectrum(c: &mut Criterion) {
    let n = 1024;
    let x = data(n);
    let mut g = c.benchmark_group("spectrum/1024");
    let mut plan = SpectrumPlan::new(n, WindowFn::Hann);
    let mut out = vec![0f32; n / 2 + 1];
    g.bench_function("stator SpectrumPlan::amplitude (window + rfft + magnitude)", |b| {
        b.iter(|| plan.amplitude(black_box(&x), &mut out))
    });
    let r2c = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let (mut input, mut spec, mut scratch) = (r2c.make_input_vec(), r2c.make_output_vec(), r2c.make_scratch_vec());
    g.bench_function("bare realfft (rustfft) real-to-complex", |b| {
        b.iter(|| {
            input.copy_from_slice(black_box(&x));
            r2c.process_with_scratch(&mut input, &mut spec, &mut scratch).expect("sizes match");
        })
    });
    // The parts the amplitude spectrum adds to the bare transform, each alone.
    let (window, kernels) = (WindowFn::Hann.coefficients(n), Kernels::detect());
    g.bench_function("part: window multiply (in place of the copy)", |b| {
        b.iter(|| kernels.multiply(black_box(&x), &window, &mut input))
    });
    g.bench_function("part: bare realfft of the windowed block", |b| {
        b.iter(|| {
            kernels.multiply(black_box(&x), &window, &mut input);
            r2c.process_with_scratch(&mut input, &mut spec, &mut scratch).expect("sizes match");
        })
    });
    let mut mags = vec![0f32; n / 2 + 1];
    g.bench_function("part: magnitudes of the 513 bins", |b| {
        b.iter(|| kernels.magnitudes(black_box(&spec), 0.5, &mut mags))
    });
    let fft = FftPlanner::<f32>::new().plan_fft_forward(n);
    let mut buf = vec![Complex::default(); n];
    let mut cscratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
    g.bench_function("bare rustfft complex", |b| {
        b.iter(|| {
            for (d, s) in buf.iter_mut().zip(black_box(&x)) {
                *d = Complex::new(*s, 0.0);
            }
            fft.process_with_scratch(&mut buf, &mut cscratch);
        })
    });
    g.finish();
}

criterion_group!(benches, reductions, spectrum);
criterion_main!(benches);
