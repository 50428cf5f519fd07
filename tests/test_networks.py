import pytest

pytest.importorskip("tvm")

from xfer_jax.bridge import networks  # noqa: E402
from xfer_jax.bridge.platforms import get_platform  # noqa: E402
from xfer_jax.bridge.tasks import extract_tasks  # noqa: E402

pytestmark = pytest.mark.tvm


@pytest.mark.parametrize("name", [n for n in networks.network_names() if n != "bert_base"])  # bert_base: 0.4 GB
def test_every_zoo_network_exports_with_its_declared_input(name):
    net = networks.zoo_network(name)
    (shape, dtype), = net.inputs.values()
    params = net.mod["main"].params
    assert len(params) == 1 and [int(d) for d in params[0].ty.shape] == list(shape)
    assert params[0].ty.dtype == dtype and shape[0] == 1


def test_a_batch_above_one_is_its_own_network_with_its_own_tasks():
    one, eight = networks.zoo_network("mixer_tiny"), networks.zoo_network("mixer_tiny", batch=8)
    assert (one.name, eight.name) == ("mixer_tiny", "mixer_tiny-b8")
    assert [networks.unbatched_name(n.name) for n in (one, eight)] == [("mixer_tiny", 1), ("mixer_tiny", 8)]
    assert networks.unbatched_name("model-b1") == ("model-b1", 1)  # batch 1 is never in a name
    target = get_platform("auto").tvm_target()
    heaviest = [max(t.flops for t in extract_tasks(net, target)) for net in (one, eight)]
    assert heaviest[1] == pytest.approx(8 * heaviest[0], rel=0.01)
    with pytest.raises(networks.NetworkError, match="batch must be >= 1"):
        networks.zoo_network("mixer_tiny", batch=0)


def test_the_operator_kinds_the_new_networks_were_added_for_become_tuning_tasks():
    target = get_platform("auto").tvm_target()
    names = {net: " ".join(t.name for t in extract_tasks(networks.zoo_network(net), target))
             for net in ("unet_tiny", "gpt_tiny")}
    assert "conv2d_transpose" in names["unet_tiny"]
    assert "attention" in names["gpt_tiny"]
