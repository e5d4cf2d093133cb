"""PyTorch's language-model heads on the shape xent's `lm_head` example uses: one training
step (forward and backward, mean cross-entropy with a bias, no smoothing: the chunked path
takes none) of the chunked `F.linear_cross_entropy` or of the unfused
`F.cross_entropy(F.linear(H, W, b), t)`, on generated data of the same sizes.

Prints one line: `torch <path> <seconds> <peak RSS MiB>`. Run by `run.sh`, one process per
measurement so that each peak is its own.
"""

import resource
import sys
import time

import torch
import torch.nn.functional as F


def main():
    path, rows, dim, classes, threads = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    hidden = (torch.rand(rows, dim, generator=g) - 0.5).requires_grad_()
    weight = ((torch.rand(classes, dim, generator=g) - 0.5) * 0.05).requires_grad_()
    bias = torch.zeros(classes, requires_grad=True)
    targets = torch.randint(0, classes, (rows,), generator=g)

    def step():
        for t in (hidden, weight, bias):
            t.grad = None
        if path == "chunked":
            loss = F.linear_cross_entropy(
                hidden,
                weight,
                targets,
                linear_bias=bias,
                options=torch.nn.LinearCrossEntropyOptions(batch_chunk_size=256),
            )
        else:
            loss = F.cross_entropy(F.linear(hidden, weight, bias), targets)
        loss.backward()
        return loss.item()

    step()  # warm-up: allocator, threads, kernels
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {path} {seconds:.3f} {peak_mib:.0f}")


if __name__ == "__main__":
    main()
