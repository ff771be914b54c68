"""Dev-time helper for the tools: a TumorNet run folder in PyTorch.

`load_run(RUN)` → (model, config, transform): model.safetensors in torchvision's resnet18 (eval mode; every tensor
but `num_batches_tracked` must match), run.json as a dict, and torchvision's preprocessing for the run
(Resize((size, size)) → ToTensor → Normalize(mean, std)).
"""
import json

import torchvision
from safetensors.torch import load_file
from torchvision import transforms


def load_run(run):
    config = json.load(open(f"{run}/run.json"))
    model = torchvision.models.resnet18(num_classes=len(config["classes"]))
    result = model.load_state_dict(load_file(f"{run}/model.safetensors"), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    assert not missing and not result.unexpected_keys, (missing, result.unexpected_keys)
    model.eval()
    size = config["input_size"]
    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                    transforms.Normalize(config["mean"], config["std"])])
    return model, config, transform
