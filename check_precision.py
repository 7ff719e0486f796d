"""Does the evaluation precision move a run's accuracy? Its final model evaluated in float32
and under bf16 (and fp16) autocast on the run's own held-out images.

    python check_precision.py RUN_DIR [--data-dir DIR] [--device auto|cpu|cuda|mps]

Training in bf16 and evaluating in bf16 is what the records report; this shows how many
held-out images change their predicted class when the same weights run in float32 instead.
"""
import sys

import torch

import utils
from check_fit import load_run, plain_loader, run_check


def precisions_for(device):
    """The autocast dtypes to compare on `device` (None: float32, no autocast)."""
    if device.type == "cuda":
        return [None, torch.bfloat16, torch.float16]
    if device.type == "cpu":  # bf16 runs everywhere on a CPU: natively or emulated (slower)
        return [None, torch.bfloat16]
    return [None]


def precision_check(run_dir, data_dir=None, device="auto"):
    """{"eval_name", "recorded": the run's last epoch record, "results": {precision name:
    {"test_acc", "test_loss", "correct", "total", "changed": predictions unlike float32's}}}."""
    cfg, checkpoint, data, model, device = load_run(run_dir, data_dir, device)
    _, _, eval_x, eval_y = utils.split_data(data, cfg)
    loader = plain_loader(eval_x, eval_y, checkpoint, cfg.batch_size)
    results, reference = {}, None
    for dtype in precisions_for(device):
        result = utils.evaluate(model, loader, utils.EVAL_CRITERION, device, amp_dtype=dtype)
        preds, _ = utils.predict(model, loader, device, dtype)
        reference = preds if reference is None else reference
        result["changed"] = int((preds != reference).sum())
        results[utils.precision_name(dtype)] = result
    return {"eval_name": utils.evaluation_name(cfg), "recorded": checkpoint["history"]["epochs"][-1],
            "recorded_precision": checkpoint.get("precision", "float32"), "device": utils.device_name(device),
            "results": results}


def format_check(check):
    recorded = check["recorded"]
    lines = [f"{check['eval_name']}, the final model, on {check['device']}; the run recorded "
             f"{recorded['test_acc']:.2f}% in {check['recorded_precision']}:"]
    for name, r in check["results"].items():
        lines.append(f"  {name:9s} accuracy {r['test_acc']:6.2f}% ({r['correct']}/{r['total']}), "
                     f"loss {r['test_loss']:.4f}; {r['changed']} predictions unlike float32's")
    return "\n".join(lines)


def main(argv=None):
    return run_check(__doc__.split("\n\n")[0], precision_check, format_check, argv)


if __name__ == "__main__":
    sys.exit(main())
