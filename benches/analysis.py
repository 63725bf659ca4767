"""The per-machine analysis of benches/analysis.rs in numpy/scipy, on the same samples.

Levels (RMS, peak, crest factor, kurtosis), Welch spectrum (4096, Hann, 50 %), velocity RMS
10-1000 Hz, envelope spectrum (band-pass 1-10 kHz by FFT, Hilbert, squared envelope,
Hann spectrum) and peak-to-median ratios at BPFO/BPFI/2xBSF/FTF x 3 harmonics.
Prints the seconds per analysis of one machine-second at 25.6 kHz.
Usage: analysis.py SAMPLES.f32 SECONDS_BUDGET
"""
import sys
import time

import numpy as np
from scipy import signal, stats

FS = 25600.0
RPM = 1797.0
MULT = {"bpfo": 3.5848, "bpfi": 5.4152, "bsf2": 2 * 2.3567, "ftf": 0.3983}


def analyse(x):
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    peak = np.max(np.abs(x))
    crest = peak / rms
    kurt = stats.kurtosis(x, fisher=False)
    f, pxx = signal.welch(x, FS, window="hann", nperseg=4096, noverlap=2048, scaling="spectrum")
    band = (f >= 10) & (f <= 1000)
    v = np.sqrt(np.sum(pxx[band] / (2 * np.pi * f[band]) ** 2)) * 9.80665e3 / np.sqrt(1.5)
    n = len(x)
    spec = np.fft.fft(x - x.mean())
    freqs = np.fft.fftfreq(n, 1 / FS)
    keep = (freqs >= 1000) & (freqs <= 10000)
    analytic = np.fft.ifft(np.where(keep, 2 * spec, 0))
    env = np.abs(analytic) ** 2
    env_spec = np.abs(np.fft.rfft((env - env.mean()) * np.hanning(n))) * 2 / n
    df = FS / n
    shaft = RPM / 60
    scores = {}
    for name, m in MULT.items():
        for h in (1, 2, 3):
            fc = m * shaft * h
            lo, hi = int(fc * 0.98 / df) - 1, int(fc * 1.02 / df) + 1
            half = max(20 * df, 0.25 * fc)
            nb = env_spec[int((fc - half) / df) : int((fc + half) / df)]
            scores[(name, h)] = 20 * np.log10(env_spec[lo : hi + 1].max() / np.median(nb))
    return rms, crest, kurt, v, scores


def main():
    x = np.fromfile(sys.argv[1], dtype="<f4")
    budget = float(sys.argv[2])
    analyse(x)
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < budget:
        analyse(x)
        n += 1
    print((time.perf_counter() - start) / n)


if __name__ == "__main__":
    main()
