"""Conv4 and the metric learners (ProtoNet, Matching Networks, Relation Networks): shapes,
hand-computed cases, gradients, learning a synthetic few-shot task, input errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones import Conv4
from metarl.learners.episodic import EpisodicClassifier, check_episode
from metarl.learners.matchingnet import MatchingNet
from metarl.learners.protonet import ProtoNet, prototypes, squared_distances
from metarl.learners.relationnet import RelationNet

LEARNERS: dict[str, Callable[[], EpisodicClassifier]] = {
    "protonet": lambda: ProtoNet(Conv4(hidden=16)),
    "matchingnet-fce": lambda: MatchingNet(Conv4(hidden=16), embedding_size=16),
    "matchingnet": lambda: MatchingNet(Conv4(hidden=16), embedding_size=16, fce=False),
    "relationnet": lambda: RelationNet(Conv4(hidden=16, pooled_blocks=2)),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def synthetic_episodes(
    generator: torch.Generator, batch: int, ways: int = 3, shots: int = 2, queries: int = 3
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Episodes whose classes are fresh random 28x28 templates (7x7 noise upscaled, so that
    they survive pooling); images are a template plus unit Gaussian noise."""
    coarse = torch.randn(batch * ways, 1, 7, 7, generator=generator)
    templates = F.interpolate(coarse, scale_factor=4).view(batch, ways, 1, 1, 28, 28)

    def images(n: int) -> Tensor:
        noise = torch.randn(batch, ways, n, 1, 28, 28, generator=generator)
        return (templates + noise).flatten(1, 2)

    def labels(n: int) -> Tensor:
        return torch.arange(ways).repeat_interleave(n).expand(batch, -1)

    return images(shots), labels(shots), images(queries), labels(queries)


def points(*xy: tuple[float, float]) -> Tensor:
    """2-D points as one episode of 1x1x2 images, for an ``nn.Flatten()`` encoder."""
    return torch.tensor(xy, dtype=torch.float32).view(1, len(xy), 1, 1, 2)


# Conv4


def test_conv4_gives_64_features_for_28x28_keeping_leading_dims() -> None:
    encoder = Conv4()
    assert encoder(torch.randn(2, 3, 1, 28, 28)).shape == (2, 3, 64)
    assert encoder(torch.randn(5, 1, 28, 28)).shape == (5, 64)
    assert encoder.out_features(28) == 64


def test_conv4_gives_1600_features_for_84x84_rgb() -> None:
    encoder = Conv4(in_channels=3)
    assert encoder(torch.randn(2, 1, 3, 84, 84)).shape == (2, 1, 1600)
    assert encoder.out_shape(84) == (64, 5, 5)


def test_conv4_feature_map_keeps_maps_of_unpooled_blocks() -> None:
    encoder = Conv4(hidden=16, pooled_blocks=2)
    maps = encoder.feature_map(torch.randn(2, 3, 1, 28, 28))
    assert maps.shape == (2, 3, 16, 7, 7)
    assert encoder.out_shape(28) == (16, 7, 7)
    assert Conv4(hidden=16, padding=0).out_shape(84) == (16, 3, 3)  # 82 41 39 19 17 8 6 3


def test_conv4_strided_halves_the_maps_in_the_convolution() -> None:
    """As Finn et al. and Nichol et al.'s Omniglot network: 28 -> 14 -> 7 -> 4 -> 2, each
    block a stride-2 3x3 convolution (padding 1) with no pooling layer."""
    encoder = Conv4(hidden=8, downsample="stride")
    assert encoder.out_shape(28) == (8, 2, 2) and encoder.out_features(28) == 32
    assert encoder(torch.randn(2, 3, 1, 28, 28)).shape == (2, 3, 32)
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 4
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in encoder.modules())
    # (size + 2 * padding - 3) // 2 + 1, unpadded: 84 -> 41 -> 20 -> 9 -> 4
    assert Conv4(hidden=4, padding=0, downsample="stride").out_shape(84) == (4, 4, 4)
    images = torch.randn(3, 1, 28, 28)
    first = encoder.blocks[0][0]
    torch.testing.assert_close(  # the stride-1 convolution's every other output
        first(images), torch.nn.functional.conv2d(images, first.weight, padding=1)[..., ::2, ::2]
    )
    with pytest.raises(ValueError, match="block 4 of 4: .* stride 2 cannot take 2x2 inputs"):
        Conv4(padding=0, downsample="stride").out_shape(28)  # 28 -> 13 -> 6 -> 2 -> empty


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"downsample": "avg"}, "downsample must be one of pool, stride, got 'avg'"),
        ({"hidden": 0}, "hidden must be a positive integer"),
        ({"pooled_blocks": 5}, "pooled_blocks must be an integer in 0..blocks=4"),
        ({"padding": -1}, "padding must be a non-negative integer"),
        ({"norm": "instance"}, "norm must be one of batch, layer, got 'instance'"),
    ],
)
def test_conv4_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Conv4(**kwargs)


def test_conv4_layer_norm_embeds_each_image_on_its_own_in_training() -> None:
    encoder = Conv4(hidden=8, norm="layer").train()
    images = torch.randn(4, 1, 28, 28)
    alone = torch.cat([encoder(image[None]) for image in images])
    torch.testing.assert_close(encoder(images), alone)
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 4 and all(m.num_groups == 1 for m in norms)


def test_conv4_rejects_wrong_channels_and_too_small_images() -> None:
    with pytest.raises(ValueError, match=r"expects images \(\.\.\., 1, H, W\)"):
        Conv4()(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="14x14 images are too small for block 3 of 4"):
        Conv4(padding=0).out_shape(14)


# ProtoNet


def test_protonet_logits_are_negative_squared_distances_to_class_means() -> None:
    support_x = points((0, 0), (2, 0), (0, 3))  # class 0 has mean (1, 0), class 1 is (0, 3)
    support_y = torch.tensor([[0, 0, 1]])
    query_x = points((1, 1), (0, 3))
    logits = ProtoNet(nn.Flatten())(support_x, support_y, query_x, ways=2)
    assert torch.equal(logits, torch.tensor([[[-1.0, -5.0], [-10.0, 0.0]]]))


def test_prototypes_average_any_number_of_shots() -> None:
    embeddings = torch.randn(2, 6, 3)
    labels = torch.tensor([[2, 0, 0, 1, 2, 2], [0, 1, 1, 1, 1, 2]])
    expected = torch.stack(
        [torch.stack([embeddings[b, labels[b] == n].mean(0) for n in range(3)]) for b in range(2)]
    )
    torch.testing.assert_close(prototypes(embeddings, labels, 3), expected)


def test_squared_distances_match_differences() -> None:
    a, b = torch.randn(2, 4, 5), torch.randn(2, 3, 5)
    expected = (a.unsqueeze(2) - b.unsqueeze(1)).pow(2).sum(-1)
    torch.testing.assert_close(squared_distances(a, b), expected)


# Matching Networks


@pytest.mark.parametrize("fce", [True, False])
def test_matchingnet_attention_sums_to_one(fce: bool) -> None:
    model = MatchingNet(Conv4(hidden=16), embedding_size=16, fce=fce, fce_steps=3)
    support_x, support_y, query_x, _ = synthetic_episodes(torch.Generator().manual_seed(0), 2)
    attention = model.attention(support_x, support_y, query_x, 3)
    assert attention.shape == (2, 9, 6)
    assert (attention > 0).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 9))
    logits = model(support_x, support_y, query_x, 3)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(2, 9))


def test_matchingnet_cosine_scale_sharpens_the_same_attention() -> None:
    model = MatchingNet(Conv4(hidden=16), embedding_size=16, fce=True, fce_steps=2).eval()
    episode = synthetic_episodes(torch.Generator().manual_seed(0), 2)[:3]
    plain = model.attention(*episode, 3)
    model.cosine_scale = 10.0
    # softmax(10 c) = softmax(10 log softmax(c)): the log-normaliser cancels
    torch.testing.assert_close(model.attention(*episode, 3), (10 * plain.log()).softmax(-1))


def test_matchingnet_without_fce_attends_by_cosine_similarity() -> None:
    support_x = points((1, 0), (0, 2), (-3, 0))
    support_y = torch.tensor([[0, 1, 2]])
    query_x = points((0, 2))  # equal to the class 1 point; cosines 0, 1, 0
    logits = MatchingNet(nn.Flatten(), embedding_size=2, fce=False)(
        support_x, support_y, query_x, ways=3
    )
    e = math.e
    torch.testing.assert_close(logits, torch.tensor([[[1.0, e, 1.0]]]).div(2 + e).log())
    assert logits.argmax(-1).item() == 1


def test_matchingnet_rejects_embeddings_of_another_width() -> None:
    support_x, support_y, query_x, _ = synthetic_episodes(torch.Generator().manual_seed(0), 1)
    with pytest.raises(ValueError, match="encoder gives 16 features, but embedding_size=64"):
        MatchingNet(Conv4(hidden=16), embedding_size=64)(support_x, support_y, query_x, 3)


# Relation Networks


def test_relationnet_scores_lie_in_unit_interval_and_loss_is_mse_to_one_hot() -> None:
    model = RelationNet(Conv4(hidden=16, pooled_blocks=2))
    support_x, support_y, query_x, query_y = synthetic_episodes(torch.Generator().manual_seed(0), 2)
    scores = model(support_x, support_y, query_x, 3)
    assert scores.shape == (2, 9, 3)
    assert ((scores >= 0) & (scores <= 1)).all()
    squared = [
        (scores[b, m, n] - float(query_y[b, m] == n)) ** 2
        for b in range(2)
        for m in range(9)
        for n in range(3)
    ]
    torch.testing.assert_close(model.loss(scores, query_y), torch.stack(squared).mean())


def test_relationnet_checks_image_sizes() -> None:
    with pytest.raises(ValueError, match="too small for the relation module"):
        RelationNet(Conv4(hidden=16))  # 4 pooled blocks leave 1x1 maps
    model = RelationNet(Conv4(hidden=16, pooled_blocks=2), image_size=84)
    support_x, support_y, query_x, _ = synthetic_episodes(torch.Generator().manual_seed(0), 1)
    with pytest.raises(ValueError, match="built for 84x84 images, got 28x28"):
        model(support_x, support_y, query_x, 3)


# All learners


@pytest.mark.parametrize("name", LEARNERS)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = LEARNERS[name]()
    support_x, support_y, query_x, query_y = synthetic_episodes(torch.Generator().manual_seed(0), 2)
    model.loss(model(support_x, support_y, query_x, 3), query_y).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", LEARNERS)
def test_learner_learns_a_synthetic_few_shot_task(name: str) -> None:
    model = LEARNERS[name]()
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        support_x, support_y, query_x, query_y = synthetic_episodes(generator, 4)
        loss = model.loss(model(support_x, support_y, query_x, 3), query_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.85 * sum(losses[:5])
    model.eval()
    support_x, support_y, query_x, query_y = synthetic_episodes(generator, 20)
    with torch.no_grad():
        predictions = model(support_x, support_y, query_x, 3).argmax(-1)
    assert (predictions == query_y).float().mean() > 0.8  # chance: 1/3; untrained: 0.3 to 0.75


BAD_EPISODES = {
    "support_y too short": (lambda sx, sy, qx: (sx, sy[:, :-1], qx, 3), "support_y must have"),
    "query image size": (lambda sx, sy, qx: (sx, sy, qx[..., :-1], 3), "query_x must hold"),
    "unbatched images": (lambda sx, sy, qx: (sx[0], sy, qx, 3), r"image batches \(B, n, C"),
    "label too large": (lambda sx, sy, qx: (sx, sy.clamp(max=1) * 3, qx, 3), r"in 0\.\.2"),
    "negative label": (lambda sx, sy, qx: (sx, sy - 1, qx, 3), r"in 0\.\.2 for ways=3"),
    "class without shots": (lambda sx, sy, qx: (sx, sy, qx, 4), "has none of class 3"),
    "float labels": (lambda sx, sy, qx: (sx, sy.float(), qx, 3), "int64 labels"),
    "no ways": (lambda sx, sy, qx: (sx, sy, qx, 0), "ways must be a positive integer"),
}


@pytest.mark.parametrize("case", BAD_EPISODES)
@pytest.mark.parametrize("name", LEARNERS)
def test_bad_episode_raises_value_error(name: str, case: str) -> None:
    corrupt, match = BAD_EPISODES[case]
    support_x, support_y, query_x, _ = synthetic_episodes(torch.Generator().manual_seed(0), 2)
    episode = corrupt(support_x, support_y, query_x)
    with pytest.raises(ValueError, match=match):
        check_episode(*episode)
    with pytest.raises(ValueError, match=match):
        LEARNERS[name]()(*episode)


def test_relationnet_class_maps_are_means_so_repeated_shots_change_nothing() -> None:
    torch.manual_seed(0)
    model = RelationNet(Conv4(hidden=16, pooled_blocks=2)).eval()
    support_x, query_x = torch.rand(1, 3, 1, 28, 28), torch.rand(1, 4, 1, 28, 28)
    support_y = torch.tensor([[0, 1, 2]])
    one_shot = model(support_x, support_y, query_x, 3)
    twice = model(support_x.repeat(1, 2, 1, 1, 1), support_y.repeat(1, 2), query_x, 3)
    torch.testing.assert_close(twice, one_shot)


def test_relationnet_scores_equal_the_relation_module_on_concatenated_maps() -> None:
    torch.manual_seed(1)
    model = RelationNet(Conv4(hidden=16, pooled_blocks=2)).eval()
    support_x, query_x = torch.rand(2, 3, 1, 28, 28), torch.rand(2, 4, 1, 28, 28)
    support_y = torch.tensor([[0, 1, 2], [2, 0, 1]])
    scores = model(support_x, support_y, query_x, 3)
    maps = model.encoder.feature_map
    for b in range(2):
        for m in range(4):
            for n in range(3):
                pair = torch.cat([maps(support_x[b, support_y[b] == n])[0], maps(query_x[b, m])])
                expected = model.relation(pair[None])[0, 0]
                torch.testing.assert_close(scores[b, m, n], expected, rtol=1e-4, atol=1e-5)


def test_conv4_batch_norm_runs_in_float32_under_autocast():
    """Its batch norm leaves autocast (fp16 under vmap on CUDA got half weights) and equals
    torch's in float32, with torch's parameter names; float64 stays float64."""
    from metarl.backbones.conv4 import Float32BatchNorm2d

    torch.manual_seed(0)
    ours, plain = Float32BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    plain.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(plain.state_dict())
    x = torch.randn(4, 3, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ours(x.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, plain(x.bfloat16().float()))
    assert ours.double()(x.double()).dtype == torch.float64


def test_a_channels_last_conv4_equals_the_plain_one():
    """The same features and weight gradients (in float64: float32 sums in another order
    differ by ~1e-3 relative after batch norm), and its maps stay channels-last through the
    blocks, in evaluation (where pooling reorders plain maps) too."""
    import copy

    from metarl.backbones import Conv4
    from metarl.backbones.conv4 import prefer_channels_last

    torch.manual_seed(0)
    plain = Conv4(hidden=8).double()
    fast = prefer_channels_last(copy.deepcopy(plain), torch.device("cpu"))
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    outputs = [net(x) for net in (plain, fast)]
    for out in outputs:
        out.square().sum().backward()
    torch.testing.assert_close(outputs[1], outputs[0])
    for ours, reference in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, reference.grad)
    with torch.no_grad():
        maps = fast.blocks[:2](x)
        assert maps.is_contiguous(memory_format=torch.channels_last) and not maps.is_contiguous()
        torch.testing.assert_close(fast(x), plain(x))


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv4_statistics_per_group_equal_a_pass_per_group(channels_last: bool) -> None:
    """Three runs of four images in one pass give each run's own training-mode pass (batch
    norm over those four only), in both memory orders; outside the block, one batch again."""
    from metarl.backbones.conv4 import prefer_channels_last, statistics_per_group

    torch.manual_seed(0)
    net = Conv4(hidden=8).double()
    with torch.no_grad():  # non-trivial affine parameters
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.5, 0.5)
    if channels_last:
        prefer_channels_last(net, torch.device("cpu"))
    x = torch.rand(12, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        separate = torch.cat([net(run) for run in x.split(4)])
        with statistics_per_group(net, 4):
            grouped = net(x)
        whole = net(x)
    torch.testing.assert_close(grouped, separate)
    assert not torch.allclose(whole, separate)


def test_conv4_statistics_per_group_reject_a_partial_group() -> None:
    from metarl.backbones.conv4 import statistics_per_group

    net = Conv4(hidden=4)
    with pytest.raises(ValueError, match="positive integer, got 0"), statistics_per_group(net, 0):
        pass
    with statistics_per_group(net, 4), pytest.raises(ValueError, match="got 6 images"):
        net(torch.rand(6, 1, 28, 28))
    assert net(torch.rand(6, 1, 28, 28)).shape == (6, 4)  # the groups ended with the block


def test_conv4_pooling_equals_torch_with_and_without_autograd():
    """Its channels-last evaluation path and its autograd path give torch's values and
    gradients."""
    from metarl.backbones.conv4 import MaxPool2x2

    x = torch.relu(torch.randn(3, 8, 10, 10))
    reference = F.max_pool2d(x, 2)
    with torch.no_grad():
        torch.testing.assert_close(MaxPool2x2()(x), reference, rtol=0, atol=0)
        assert MaxPool2x2()(x).is_contiguous()
    leaf = x.clone().requires_grad_()
    MaxPool2x2()(leaf).sum().backward()
    expected = x.clone().requires_grad_()
    F.max_pool2d(expected, 2).sum().backward()
    torch.testing.assert_close(leaf.grad, expected.grad, rtol=0, atol=0)
