"""The timing loop behind bench/compare.py: alternating blocks, tables and the summary.

Imported by compare.py only after the thread variables are set, because
NumPy's BLAS and PyTorch read them when they load.
"""

import os
import platform
import statistics
import time

import numpy as np
import torch

from bench.flops import MatmulRate, largest_matmul_shape, training_step_flops
from bench.torch_reference import from_numpy_model, loss_of
from models.allocator import keep_freed_memory
from models.factory import make_model
from models.optim import Adam
from models.tasks import make_task

LEARNING_RATE = 1e-3
BATCHES = 4  # distinct fixed batches per model, cycled through
LATENCY_BLOCK_SECONDS = 0.3
LOSS_AGREEMENT = 1e-4  # relative, float32 first-step losses of the two implementations


class NumpyTrainer:
    """One NumPy training step per call: loss and grads, then Adam (which takes the norm)."""

    def __init__(self, model, batches, loss):
        self.model, self.batches, self.loss = model, batches, loss
        self.optimizer = Adam(model.params)
        self.count = 0

    def step(self):
        x, y = self.batches[self.count % len(self.batches)]
        self.count += 1
        value, grads = self.model.loss_and_grads(x, y, self.loss)
        self.optimizer.step(self.model.params, grads, LEARNING_RATE)
        return value

    def infer(self, x):
        return self.model.predict(x, trace=True)


class TorchTrainer:
    """One PyTorch eager training step per call: forward, backward, gradient norm, Adam."""

    def __init__(self, model, batches, loss):
        self.model, self.loss = model, loss
        self.batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
        self.parameters = model.parameters()
        self.optimizer = torch.optim.Adam(self.parameters, lr=LEARNING_RATE, fused=True)
        self.count = 0

    def step(self):
        x, y = self.batches[self.count % len(self.batches)]
        self.count += 1
        self.optimizer.zero_grad(set_to_none=True)
        outputs, _ = self.model.forward(x)
        value = loss_of(outputs, y, self.loss)
        value.backward()
        torch.nn.utils.get_total_norm([p.grad for p in self.parameters])
        self.optimizer.step()
        return value.item()

    def infer(self, x):
        # nn.LSTM exposes no gate activations, so only the RMC reference records a trace.
        with torch.inference_mode():
            return self.model.forward(torch.from_numpy(x), trace=self.model.config["kind"] == "rmc")


def describe_machine(threads):
    """Return lines naming the CPU, the library versions, the BLAS and the thread settings."""
    model_name = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    variables = ", ".join(
        f"{name}={os.environ.get(name)}"
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    )
    return [
        f"machine: {model_name}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}",
        f"numpy {np.__version__} with {blas['name']} {blas['version']}; torch {torch.__version__}",
        f"threads: --threads {threads}; {variables}; torch.get_num_threads()="
        f"{torch.get_num_threads()}",
    ]


def sample_batches(config, seed=0):
    task = make_task(config.task, **config.task_options)
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(BATCHES):
        x, y = task.sample(config.batch_size, rng)
        y = y.astype(np.float32) if task.loss == "mse" else y
        batches.append((x.astype(np.float32), y))
    return task, batches


def time_calls(function, count):
    """Return (wall seconds, CPU seconds) per call of ``function`` over ``count`` calls.

    CPU time is the process's, so it leaves out the time other processes hold the core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        function()
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def warm_up(function, seconds):
    """Call ``function`` for about ``seconds``; return the median seconds of one call."""
    durations = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < 3:
        started = time.perf_counter()
        function()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def alternate(numpy_call, torch_call, blocks, calls_per_block, rate=None):
    """Time blocks in the order NumPy, PyTorch, NumPy, ...

    Returns two lists, NumPy's and PyTorch's, of (wall, CPU) seconds per call, one per block.
    """
    numpy_times, torch_times = [], []
    for _ in range(blocks):
        numpy_times.append(time_calls(numpy_call, calls_per_block))
        torch_times.append(time_calls(torch_call, calls_per_block))
        if rate is not None:
            rate.burst()
    return numpy_times, torch_times


def summarise(times, clock):
    """Return the median, min and max in milliseconds of one clock (0 wall, 1 CPU) of ``times``."""
    milliseconds = [1000.0 * value[clock] for value in times]
    return statistics.median(milliseconds), min(milliseconds), max(milliseconds)


def ratio(result, clock):
    """Return NumPy's speed over PyTorch's: the ratio of medians, and the min and max pair ratio."""
    numpy_ms, torch_ms = result["numpy"], result["torch"]
    pairs = [t[clock] / n[clock] for n, t in zip(numpy_ms, torch_ms, strict=True)]
    medians = summarise(torch_ms, clock)[0] / summarise(numpy_ms, clock)[0]
    return medians, min(pairs), max(pairs)


def benchmark_model(name, kind, config, hyper, args):
    """Train one model in both implementations in alternating blocks; return its results."""
    task, batches = sample_batches(config)
    model = make_model(
        kind, input_size=task.input_size, output_size=task.output_size, seed=0, **hyper
    )
    rate = MatmulRate([largest_matmul_shape(model.config, config.batch_size), (1024, 1024, 1024)])
    rate.burst()
    reference = from_numpy_model(model, torch.float32)
    numpy_trainer = NumpyTrainer(model, batches, task.loss)
    torch_trainer = TorchTrainer(reference, batches, task.loss)

    # Same weights, same batch: the first losses must agree, or the comparison is void.
    numpy_loss, torch_loss = numpy_trainer.step(), torch_trainer.step()
    if abs(numpy_loss - torch_loss) > LOSS_AGREEMENT * abs(torch_loss):
        raise RuntimeError(
            f"{name}/{kind}: first-step losses differ: NumPy {numpy_loss}, PyTorch {torch_loss}"
        )

    numpy_seconds = warm_up(numpy_trainer.step, args.warmup_seconds)
    torch_seconds = warm_up(torch_trainer.step, args.warmup_seconds)
    steps = max(1, round(args.block_seconds / max(numpy_seconds, torch_seconds)))
    numpy_times, torch_times = alternate(
        numpy_trainer.step, torch_trainer.step, args.blocks, steps, rate
    )

    result = {
        "steps_per_block": steps,
        "flops": training_step_flops(model.config, config.batch_size, task.seq_len),
        "first_loss": (numpy_loss, torch_loss),
        "flop_rate": rate.median(),
        "numpy": numpy_times,
        "torch": torch_times,
    }
    if config.latency:
        result["latency"] = benchmark_latency(numpy_trainer, torch_trainer, batches, args)
    return result


def benchmark_latency(numpy_trainer, torch_trainer, batches, args):
    """Time batch-1 inference with the full trace, alternating as for training."""
    x = batches[0][0][:1]  # (1, T, D)
    numpy_seconds = warm_up(lambda: numpy_trainer.infer(x), args.warmup_seconds / 2)
    torch_seconds = warm_up(lambda: torch_trainer.infer(x), args.warmup_seconds / 2)
    calls = max(1, round(LATENCY_BLOCK_SECONDS / max(numpy_seconds, torch_seconds)))
    return alternate(
        lambda: numpy_trainer.infer(x), lambda: torch_trainer.infer(x), args.blocks, calls
    )


def _range(values):
    median, low, high = values
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


def training_rows(name, kind, config, result, flop_rate):
    """Return the two table rows of one model."""
    rows = []
    for implementation in ("numpy", "torch"):
        wall = summarise(result[implementation], 0)
        cpu = summarise(result[implementation], 1)
        steps_per_second = 1000.0 / wall[0]
        fraction = result["flops"] / (cpu[0] / 1000.0) / flop_rate
        rows.append(
            f"| {name} | {kind} | {implementation} | {_range(wall)} | {_range(cpu)} | "
            f"{steps_per_second:.1f} | {steps_per_second * config.batch_size:.0f} | "
            f"{100 * fraction:.1f}% |"
        )
    return rows


def run_benchmark(configs, args):
    """Benchmark every model of every named configuration; print the tables; return a summary."""
    torch.set_num_threads(args.threads)
    memory_kept = args.malloc == "keep" and keep_freed_memory()
    for line in describe_machine(args.threads):
        print(line)
    print(f"malloc: --malloc {args.malloc}; freed memory kept in the process: {memory_kept}")

    summary = {
        "malloc": args.malloc,
        "malloc_kept": memory_kept,
        "threads": args.threads,
        "ratios": {},
        "ratios_cpu": {},
        "compute_fraction": {},
        "latency_ms": {},
    }
    table = [
        "| config | model | impl | wall ms/step | CPU ms/step | steps/s | sequences/s | "
        "of compute-bound limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ratio_lines, latency_lines = [], []
    for name, config in configs.items():
        for kind, hyper in config.models.items():
            result = benchmark_model(name, kind, config, hyper, args)
            flop_rate = result["flop_rate"]
            table.extend(training_rows(name, kind, config, result, flop_rate))
            key = f"{name}/{kind}"
            wall_ratio, cpu_ratio = ratio(result, 0), ratio(result, 1)
            numpy_cpu = summarise(result["numpy"], 1)[0] / 1000.0
            summary["ratios"][key] = round(wall_ratio[0], 3)
            summary["ratios_cpu"][key] = round(cpu_ratio[0], 3)
            summary["compute_fraction"][key] = round(result["flops"] / numpy_cpu / flop_rate, 4)
            ratio_lines.append(
                f"{key}: NumPy/PyTorch steps/s, wall {_range(wall_ratio)}, "
                f"CPU {_range(cpu_ratio)} (median, block pairs); "
                f"{result['steps_per_block']} steps per block; "
                f"{result['flops'] / 1e9:.3f} GFLOP per step; "
                f"matmul rate {flop_rate / 1e9:.1f} GFLOP/s; "
                f"first-step loss NumPy {result['first_loss'][0]:.6f}, "
                f"PyTorch {result['first_loss'][1]:.6f}"
            )
            if "latency" in result:
                numpy_times, torch_times = result["latency"]
                summary["latency_ms"][key] = round(summarise(numpy_times, 0)[0], 4)
                latency_lines.append(
                    f"{key}: batch-1 predict(x, trace=True) ms, "
                    f"NumPy wall {_range(summarise(numpy_times, 0))}, "
                    f"CPU {_range(summarise(numpy_times, 1))}; "
                    f"PyTorch wall {_range(summarise(torch_times, 0))}, "
                    f"CPU {_range(summarise(torch_times, 1))}"
                    + (" (nn.LSTM, without the gate trace)" if kind == "lstm" else "")
                )
            print(f"done {key}", flush=True)

    print()
    print("\n".join(table))
    print()
    print("\n".join(ratio_lines))
    if latency_lines:
        print()
        print("\n".join(latency_lines))
    return summary
