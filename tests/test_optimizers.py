"""Optimizers and schedules against hand arithmetic and an independent re-implementation.

Every expected number here is derived from the update rule in the optimizer's docstring,
either written out by hand in a comment or by the plain-Python reference below, never by
calling nnx.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnx.registry import build, registry

P0 = [1.0, -2.0]
G = [0.5, 0.25]


def one_step(name, p=P0, g=G, **kwargs):
    opt = build("optimizers", name, **kwargs)
    params = {"w": np.array(p)}
    opt.step(params, {"w": np.array(g)})
    return params["w"], opt


# -- one step by hand, per update rule ----------------------------------------------------
def test_sgd_one_step_by_hand():
    # p = p - lr g = [1 - 0.1*0.5, -2 - 0.1*0.25] = [0.95, -2.025]
    p, _ = one_step("sgd", lr=0.1)
    np.testing.assert_allclose(p, [0.95, -2.025], rtol=1e-15)


def test_sgd_momentum_by_hand():
    # Step 1: v = 0 * 0.9 + g = [0.5, 0.25]; p = [1 - 0.05, -2 - 0.025] = [0.95, -2.025]
    # Step 2 (same g): v = 0.9 * [0.5, 0.25] + [0.5, 0.25] = [0.95, 0.475]
    #                  p = [0.95 - 0.1*0.95, -2.025 - 0.1*0.475] = [0.855, -2.0725]
    opt = build("optimizers", "sgd", lr=0.1, momentum=0.9)
    p = np.array(P0)
    opt.step({"w": p}, {"w": np.array(G)})
    np.testing.assert_allclose(p, [0.95, -2.025], rtol=1e-15)
    opt.step({"w": p}, {"w": np.array(G)})
    np.testing.assert_allclose(p, [0.855, -2.0725], rtol=1e-15)
    np.testing.assert_allclose(opt.state["w"]["velocity"], [0.95, 0.475], rtol=1e-15)


def test_sgd_nesterov_one_step_by_hand():
    # v = g = [0.5, 0.25]; d = g + 0.9 v = [0.95, 0.475]
    # p = [1 - 0.1*0.95, -2 - 0.1*0.475] = [0.905, -2.0475]
    p, _ = one_step("sgd", lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(p, [0.905, -2.0475], rtol=1e-15)


def test_adagrad_one_step_by_hand():
    # s = g^2 = [0.25, 0.0625]; sqrt(s) = [0.5, 0.25]
    # p = p - 0.1 * g / (sqrt(s) + 1e-10) = [1 - 0.1*0.5/(0.5+1e-10), -2 - 0.1*0.25/(0.25+1e-10)]
    p, opt = one_step("adagrad", lr=0.1)
    np.testing.assert_allclose(p, [1 - 0.05 / (0.5 + 1e-10), -2 - 0.025 / (0.25 + 1e-10)], rtol=1e-15)
    np.testing.assert_allclose(opt.state["w"]["sum_sq"], [0.25, 0.0625], rtol=1e-15)


def test_rmsprop_one_step_by_hand():
    # s = 0.9*0 + 0.1 g^2 = [0.025, 0.00625]; sqrt(s) = [0.5, 0.25] / sqrt(10)
    # g / sqrt(s) = sqrt(10) for both entries (eps 1e-8 moves it by ~1e-7 relative)
    # p = [1 - 0.01*sqrt(10), -2 - 0.01*sqrt(10)]
    p, _ = one_step("rmsprop", lr=0.01, rho=0.9, eps=1e-8)
    step = [0.01 * 0.5 / (math.sqrt(0.025) + 1e-8), 0.01 * 0.25 / (math.sqrt(0.00625) + 1e-8)]
    np.testing.assert_allclose(p, [1 - step[0], -2 - step[1]], rtol=1e-15)
    np.testing.assert_allclose(step, 0.01 * math.sqrt(10), rtol=1e-6)


def test_adam_two_steps_by_hand():
    # Step 1, t=1: m = 0.1 g = [0.05, 0.025]; v = 0.001 g^2 = [0.00025, 0.0000625]
    #   m_hat = m / 0.1 = g; v_hat = v / 0.001 = g^2; step = lr g / (|g| + eps) = 0.1 sign(g)
    #   p = [1 - 0.1*0.5/(0.5+1e-8), -2 - 0.1*0.25/(0.25+1e-8)] ~ [0.9, -2.1]
    opt = build("optimizers", "adam", lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    p = np.array(P0)
    opt.step({"w": p}, {"w": np.array(G)})
    expected1 = np.array([1 - 0.05 / (0.5 + 1e-8), -2 - 0.025 / (0.25 + 1e-8)])
    np.testing.assert_allclose(p, expected1, rtol=1e-15)
    # Step 2, t=2, g2 = [-0.5, 0.25] (same squares, so v_hat stays g^2 exactly):
    #   m = 0.9 [0.05, 0.025] + 0.1 [-0.5, 0.25] = [-0.005, 0.0475]
    #   m_hat = m / (1 - 0.81) = [-0.005/0.19, 0.0475/0.19] = [-1/38, 0.25]
    #   v = 0.999 [0.00025, 0.0000625] + 0.001 [0.25, 0.0625] = 0.001999 [0.25, 0.0625]
    #   v_hat = v / (1 - 0.999^2) = v / 0.001999 = [0.25, 0.0625]; sqrt = [0.5, 0.25]
    #   step = 0.1 m_hat / (sqrt(v_hat) + eps) = [0.1*(-1/38)/0.5, 0.1*0.25/0.25] = [-1/190, 0.1]
    opt.step({"w": p}, {"w": np.array([-0.5, 0.25])})
    expected2 = expected1 - [0.1 * (-1 / 38) / (0.5 + 1e-8), 0.1 * 0.25 / (0.25 + 1e-8)]
    np.testing.assert_allclose(p, expected2, rtol=1e-12)
    m, v = opt.moments(opt.state["w"])  # the paper's m and v, from the state kept unscaled
    np.testing.assert_allclose(m, [-0.005, 0.0475], rtol=1e-12)
    np.testing.assert_allclose(v, [0.001999 * 0.25, 0.001999 * 0.0625], rtol=1e-12)
    assert opt.iterations == 2


def test_adamw_one_step_by_hand():
    # Decoupled decay first: p = p (1 - lr wd) = [1, -2] * (1 - 0.1*0.1) = [0.99, -1.98]
    # then the Adam step of test_adam: 0.1 sign(g) -> [0.99 - 0.1, -1.98 - 0.1] = [0.89, -2.08]
    p, _ = one_step("adamw", lr=0.1, weight_decay=0.1)
    np.testing.assert_allclose(p, [0.99 - 0.05 / (0.5 + 1e-8), -1.98 - 0.025 / (0.25 + 1e-8)],
                               rtol=1e-15)


def test_sgd_l2_weight_decay_by_hand():
    # g' = g + wd p = [0.5 + 0.5*1, 0.25 + 0.5*(-2)] = [1.0, -0.75]
    # p = [1 - 0.1*1.0, -2 - 0.1*(-0.75)] = [0.9, -1.925]
    p, _ = one_step("sgd", lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(p, [0.9, -1.925], rtol=1e-15)


def test_adam_l2_and_adamw_decoupled_differ_as_documented():
    # With a zero gradient the only force is the decay.
    # Adam (L2): g' = wd p = [0.1, -0.2]; Adam normalises it: step = lr sign(p) = 0.1 sign(p)
    #   -> [1 - 0.1, -2 + 0.1] = [0.9, -1.9]: decay of fixed size, whatever |p| is.
    # AdamW: p (1 - lr wd) = [0.99, -1.98]; m = v = 0, so the Adam step is 0 / (0 + eps) = 0.
    l2, _ = one_step("adam", g=[0.0, 0.0], lr=0.1, weight_decay=0.1)
    dec, _ = one_step("adamw", g=[0.0, 0.0], lr=0.1, weight_decay=0.1)
    np.testing.assert_allclose(l2, [1 - 0.1 * 0.1 / (0.1 + 1e-8), -2 + 0.1 * 0.2 / (0.2 + 1e-8)],
                               rtol=1e-15)
    np.testing.assert_allclose(dec, [0.99, -1.98], rtol=1e-15)


def test_clip_norm_uses_the_global_norm():
    # Global norm over both arrays: sqrt(3^2 + 4^2 + 0^2 + 12^2) = sqrt(169) = 13.
    # clip_norm 6.5 halves every gradient: p = p - lr * g / 2 with lr = 1.
    opt = build("optimizers", "sgd", lr=1.0, clip_norm=6.5)
    params = {"a": np.zeros(2), "b": np.zeros(2)}
    opt.step(params, {"a": np.array([3.0, 4.0]), "b": np.array([0.0, 12.0])})
    np.testing.assert_allclose(params["a"], [-1.5, -2.0], rtol=1e-15)
    np.testing.assert_allclose(params["b"], [0.0, -6.0], rtol=1e-15)
    # Below the threshold nothing is rescaled: norm 13 < 20.
    opt = build("optimizers", "sgd", lr=1.0, clip_norm=20.0)
    params = {"a": np.zeros(2), "b": np.zeros(2)}
    opt.step(params, {"a": np.array([3.0, 4.0]), "b": np.array([0.0, 12.0])})
    np.testing.assert_allclose(params["a"], [-3.0, -4.0], rtol=1e-15)
    np.testing.assert_allclose(params["b"], [0.0, -12.0], rtol=1e-15)


# -- stored trajectories vs an independent plain-Python implementation --------------------
def reference(name, p, grad_fn, steps, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
              eps=None, rho=0.9, beta1=0.9, beta2=0.999):
    """The docstring rules, element by element in Python floats. Returns p after each step."""
    p = list(p)
    n = len(p)
    buf1, buf2 = [0.0] * n, [0.0] * n
    out = []
    for t in range(1, steps + 1):
        g = grad_fn(p)
        for i in range(n):
            gi = g[i]
            if name == "adamw":
                p[i] = p[i] - lr * weight_decay * p[i]
            else:
                gi = gi + weight_decay * p[i]
            if name == "sgd":
                if momentum:
                    buf1[i] = momentum * buf1[i] + gi
                    d = gi + momentum * buf1[i] if nesterov else buf1[i]
                else:
                    d = gi
                p[i] = p[i] - lr * d
            elif name == "adagrad":
                buf1[i] = buf1[i] + gi * gi
                p[i] = p[i] - lr * gi / (math.sqrt(buf1[i]) + (1e-10 if eps is None else eps))
            elif name == "rmsprop":
                buf1[i] = rho * buf1[i] + (1 - rho) * gi * gi
                p[i] = p[i] - lr * gi / (math.sqrt(buf1[i]) + (1e-8 if eps is None else eps))
            elif name in ("adam", "adamw"):
                buf1[i] = beta1 * buf1[i] + (1 - beta1) * gi
                buf2[i] = beta2 * buf2[i] + (1 - beta2) * gi * gi
                m_hat = buf1[i] / (1 - beta1**t)
                v_hat = buf2[i] / (1 - beta2**t)
                p[i] = p[i] - lr * m_hat / (math.sqrt(v_hat) + (1e-8 if eps is None else eps))
            else:
                raise AssertionError(name)
        out.append(list(p))
    return out


C = [1.0, 0.0, -1.0]
START = [0.5, -1.5, 2.0]


def quadratic_grad(p):
    # f(p) = sum((p - c)^2); df/dp = 2 (p - c)
    return [2 * (pi - ci) for pi, ci in zip(p, C)]


CASES = {
    "sgd": ("sgd", {"lr": 0.1}),
    "sgd+momentum": ("sgd", {"lr": 0.05, "momentum": 0.9}),
    "sgd+nesterov": ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "sgd+weight_decay": ("sgd", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1}),
    "adagrad": ("adagrad", {"lr": 0.5}),
    "rmsprop": ("rmsprop", {"lr": 0.05, "rho": 0.8}),
    "adam": ("adam", {"lr": 0.1, "beta1": 0.8, "beta2": 0.99}),
    "adam+weight_decay": ("adam", {"lr": 0.1, "weight_decay": 0.2}),
    "adamw": ("adamw", {"lr": 0.1, "weight_decay": 0.2}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_five_step_trajectory(case):
    name, kwargs = CASES[case]
    expected = reference(name, START, quadratic_grad, 5, **kwargs)
    opt = build("optimizers", name, **kwargs)
    p = np.array(START)
    for step in range(5):
        opt.step({"p": p}, {"p": 2 * (p - np.array(C))})
        np.testing.assert_allclose(p, expected[step], rtol=1e-13, atol=1e-15,
                                   err_msg=f"{case}, step {step + 1}")
    # Moving towards c at all: the trajectory is not trivially the start.
    assert sum((a - c) ** 2 for a, c in zip(expected[-1], C)) < sum(
        (a - c) ** 2 for a, c in zip(START, C))


def torch_optimizer(torch, name, kwargs, tensor):
    """The torch.optim equivalent of one of CASES (same rule, same defaults)."""
    kwargs = dict(kwargs)
    if name == "sgd":
        return torch.optim.SGD([tensor], **kwargs)
    if name == "adagrad":
        return torch.optim.Adagrad([tensor], eps=1e-10, **kwargs)
    if name == "rmsprop":
        return torch.optim.RMSprop([tensor], lr=kwargs["lr"], alpha=kwargs["rho"], eps=1e-8)
    betas = (kwargs.pop("beta1", 0.9), kwargs.pop("beta2", 0.999))
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls([tensor], betas=betas, eps=1e-8, **kwargs)


def test_trajectories_match_torch():
    torch = pytest.importorskip("torch")
    c = torch.tensor(C, dtype=torch.float64)
    for case, (name, kwargs) in sorted(CASES.items()):
        t = torch.tensor(START, dtype=torch.float64, requires_grad=True)
        topt = torch_optimizer(torch, name, kwargs, t)
        opt = build("optimizers", name, **kwargs)
        p = np.array(START)
        for step in range(5):
            topt.zero_grad()
            ((t - c) ** 2).sum().backward()
            topt.step()
            opt.step({"p": p}, {"p": 2 * (p - np.array(C))})
            np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{case}, step {step + 1}")


# -- contract: in place, state on first use, validation -----------------------------------
NAMES = registry("optimizers").names()


@pytest.mark.parametrize("name", NAMES)
def test_updates_in_place_and_creates_state_on_first_use(name):
    opt = build("optimizers", name)
    assert opt.state == {}
    buffer = np.zeros(6)
    w, b = buffer[:4].reshape(2, 2), buffer[4:]  # views, as the network hands them over
    params = {"W": w, "b": b}
    opt.step(params, {"W": np.ones((2, 2)), "b": np.full(2, -1.0)})
    assert params["W"] is w and params["b"] is b
    assert (buffer[:4] < 0).all() and (buffer[4:] > 0).all()  # the shared buffer moved
    assert set(opt.state) == {"W", "b"}
    for key, p in params.items():
        for array in opt.state[key].values():
            assert array.shape == p.shape and array.dtype == p.dtype


BAD = [
    ("sgd", {"lr": 0.0}, "lr", "0.0"),
    ("sgd", {"lr": -1}, "lr", "-1"),
    ("adam", {"lr": "abc"}, "lr", "'abc'"),
    ("adam", {"lr": float("nan")}, "lr", "nan"),
    ("sgd", {"weight_decay": -0.1}, "weight_decay", "-0.1"),
    ("adamw", {"weight_decay": -0.1}, "weight_decay", "-0.1"),
    ("adam", {"beta1": 1.0}, "beta1", "1.0"),
    ("adam", {"beta2": -0.1}, "beta2", "-0.1"),
    ("sgd", {"momentum": 1.5}, "momentum", "1.5"),
    ("sgd", {"nesterov": True}, "nesterov", "momentum=0"),
    ("rmsprop", {"rho": 1.0}, "rho", "1.0"),
    ("adagrad", {"eps": 0.0}, "eps", "0.0"),
    ("sgd", {"clip_norm": -1.0}, "clip_norm", "-1.0"),
]


@pytest.mark.parametrize("name,kwargs,param,value", BAD,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for n, kw, _, _ in BAD])
def test_bad_hyper_parameters_fail_when_built(name, kwargs, param, value):
    # Raised by the constructor: no optimizer (and so no state) ever exists.
    with pytest.raises(ValueError) as info:
        build("optimizers", name, **kwargs)
    message = str(info.value)
    assert param in message and value in message, message


def test_mismatched_keys_rejected_before_any_update():
    opt = build("optimizers", "adam")
    p = np.ones(3)
    with pytest.raises(ValueError, match=r"same keys.*\['a', 'b'\].*\['a', 'c'\]"):
        opt.step({"a": p, "b": np.ones(2)}, {"a": np.ones(3), "c": np.ones(2)})
    np.testing.assert_array_equal(p, 1.0)
    assert opt.state == {} and opt.iterations == 0


# -- schedules ----------------------------------------------------------------------------
def schedule(name, **kwargs):
    return build("schedules", name, **kwargs)


def test_constant_schedule():
    assert [schedule("constant")(e, 10) for e in (0, 5, 9)] == [1.0, 1.0, 1.0]


def test_step_decay_by_hand():
    s = schedule("step", step_size=3, gamma=0.5)
    # 0.5 ** (epoch // 3): epochs 0-2 -> 1, 3-5 -> 0.5, 6-8 -> 0.25, 9 -> 0.125
    assert [s(e, 20) for e in (0, 2, 3, 5, 6, 9)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_exponential_by_hand():
    s = schedule("exponential", gamma=0.9)
    # 0.9 ** epoch: 1, 0.9, 0.81, 0.729
    np.testing.assert_allclose([s(e, 10) for e in range(4)], [1.0, 0.9, 0.81, 0.729], rtol=1e-15)


def test_cosine_by_hand():
    s = schedule("cosine", min_factor=0.1)
    # 0.1 + 0.9 (1 + cos(pi e / 9)) / 2 with cos 0 = 1, cos(pi/3) = 1/2, cos(2 pi/3) = -1/2,
    # cos(pi) = -1: factors 1, 0.1 + 0.9*0.75, 0.1 + 0.9*0.25, 0.1
    np.testing.assert_allclose([s(e, 9) for e in (0, 3, 6, 9)], [1.0, 0.775, 0.325, 0.1],
                               rtol=1e-14)
    assert schedule("cosine")(9, 18) == pytest.approx(0.5, rel=1e-15)


def test_warmup_by_hand():
    s = schedule("warmup", warmup_epochs=4)
    # (epoch + 1) / 4 during warm-up, then 1
    assert [s(e, 12) for e in range(7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    c = schedule("warmup", warmup_epochs=4, then="cosine")
    # After warm-up a cosine over the remaining 8 epochs: (1 + cos(pi (e - 4) / 8)) / 2:
    # e=4 -> 1, e=6 -> (1 + sqrt(2)/2) / 2, e=8 -> 1/2, e=12 -> 0
    np.testing.assert_allclose([c(e, 12) for e in (3, 4, 6, 8, 12)],
                               [1.0, 1.0, (1 + math.sqrt(0.5)) / 2, 0.5, 0.0], atol=1e-15)


@pytest.mark.parametrize("name,kwargs,param", [
    ("step", {"step_size": 0}, "step_size"),
    ("step", {"gamma": 1.5}, "gamma"),
    ("exponential", {"gamma": 0.0}, "gamma"),
    ("cosine", {"min_factor": -0.5}, "min_factor"),
    ("warmup", {"warmup_epochs": 0}, "warmup_epochs"),
    ("warmup", {"then": "linear"}, "then"),
])
def test_bad_schedule_arguments(name, kwargs, param):
    with pytest.raises(ValueError, match=param):
        schedule(name, **kwargs)


# -- the learning rate in use ---------------------------------------------------------------
def test_every_step_uses_the_logged_rate_and_the_configured_rate_stays():
    """``optimizer.lr`` is the one holder of the rate in use: each epoch sets it to the
    configured rate times the schedule's factor, every step of the epoch uses it, and the
    logged ``lr`` is it. Plain SGD moves p by exactly -lr * g, so the weights tell the rate."""
    from nnx.network import mlp
    from nnx.trainer import Callback, TrainConfig, Trainer

    used = []

    class RateFromWeights(Callback):  # full batch: one step per epoch
        def on_train_start(self, trainer):
            self.before = trainer.network.flat_params.copy()

        def on_epoch_end(self, trainer, epoch, logs):
            p, g = trainer.network.flat_params, trainer.network.flat_grads
            moved = np.abs(g) > 1e-6
            used.append(float(np.median((self.before - p)[moved] / g[moved])))
            self.before = p.copy()

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))
    net = mlp(3, [4], 1, activation="tanh", rng=np.random.default_rng(1))
    opt = build("optimizers", "sgd", lr=0.4)
    config = TrainConfig(epochs=5, batch_size=0, progress=False, callbacks=[RateFromWeights()])
    trainer = Trainer(net, build("losses", "mse"), opt, config=config, task="regression",
                      schedule=schedule("step", step_size=2, gamma=0.5))
    trainer.fit(x, y)
    expected = [0.4, 0.4, 0.2, 0.2, 0.1]  # 0.4 * 0.5 ** (epoch // 2)
    assert [row["lr"] for row in trainer.history] == expected
    assert [trainer.learning_rate(epoch) for epoch in range(5)] == expected
    np.testing.assert_allclose(used, expected, rtol=1e-6)
    assert opt.lr == 0.1 and opt.config()["lr"] == 0.4  # the configured rate is never changed


def test_without_a_schedule_the_rate_is_the_configured_one():
    from nnx.network import mlp
    from nnx.trainer import TrainConfig, Trainer

    opt = build("optimizers", "adam", lr=0.003)
    trainer = Trainer(mlp(2, [3], 1, rng=np.random.default_rng(0)), build("losses", "mse"), opt,
                      config=TrainConfig(epochs=2, progress=False), task="regression")
    trainer.fit(np.ones((4, 2)), np.zeros((4, 1)))
    assert [row["lr"] for row in trainer.history] == [0.003, 0.003] and opt.lr == 0.003


def test_a_plugin_optimizer_without_its_own_config_still_has_its_rate():
    """The base class records lr, weight_decay and clip_norm, so ``config()["lr"]`` (what the
    trainer scales) exists for an optimizer that sets no ``_config`` of its own."""
    from nnx.optimizers import Optimizer

    class Plain(Optimizer):
        def update(self, p, g, state):
            p -= self.lr * g

    assert Plain(lr=0.2).config() == {"lr": 0.2, "weight_decay": 0.0, "clip_norm": 0.0,
                                      "decay_all": False}
