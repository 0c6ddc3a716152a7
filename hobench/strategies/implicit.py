"""Implicit-differentiation strategies: hypergradient descent as Reverse-HG, with the
hypergradient taken at the last of the T training steps by the implicit function theorem
(`hobench.hypergrad.implicit`) instead of by differentiating the steps.

Each hyper-iteration trains T steps from s_0 (or from the last weights, with warm_start) and
pays T plain steps, the solver's setup and the products it used (`CostModel.ift`). A unit
starts only if all `iterations` products fit; CG, which may stop early, is charged what it used.
"""

from __future__ import annotations

from hobench.domains import Choice, Interval, ParamError
from hobench.hypergrad.implicit import METHODS
from hobench.registry import STRATEGIES
from hobench.strategies.gradient import HypergradientDescent

# Every parameter of hypergradient descent except truncation, which IFT has no use for.
COMMON = {k: v for k, v in HypergradientDescent.domains.items() if k != "truncate"}


class ImplicitHG(HypergradientDescent):
    method = "cg"

    def solver_options(self) -> dict:
        raise NotImplementedError

    def hypergradient(self, problem, state, hp, T):
        args = (problem.dynamics, state, hp, T, problem.batch_at, problem.outer)
        options = {"iterations": self.iterations, "compile": self.compile, **self.solver_options()}
        return METHODS[self.method](*args, **options)

    def first_unit(self, task, costs):
        problem = costs.problem
        if problem is None:
            raise NotImplementedError(f"{self.name} needs the task's gradient problem")
        if self.method != "fixed-point" and problem.dynamics.loss is None:
            raise ValueError(
                f"{self.name}'s Hessian form needs the task's training loss (Dynamics.loss)"
            )
        T = self.steps or problem.steps
        return costs.ift(T, self.method, self.iterations), T, "hyper-iteration"

    def spent(self, costs, T, hg, unit):
        return costs.ift(T, self.method, hg.solver_iterations)


@STRATEGIES.register("ift-cg")
class IFTConjugateGradient(ImplicitHG):
    """Implicit differentiation by conjugate gradient: hypergradient descent whose hypergradient
    treats the weights after T steps as the minimiser of the training loss and solves the
    Hessian system with Hessian-vector products; no trajectory stored, and fewer products than
    steps. Wrong where training has not converged, blind to the optimiser's own
    hyperparameters (η, μ), stopped by non-positive curvature.

    H v = ∇_w E by conjugate gradient on Hessian-vector products (at most `iterations`, fewer once
    the residual is below `tol`), then ∂_λE − (∂_λ∇_w J)ᵀ v.
    """

    method = "cg"
    domains = {
        **COMMON,
        "iterations": Interval(1, integer=True),
        "tol": Interval(0, meaning="0 runs every iteration"),
    }

    def __init__(
        self,
        iterations: int = 20,
        tol: float = 1e-6,
        hyper_lr: float = 0.0,
        steps: int = 0,
        warm_start: bool = False,
        start: str = "default",
        compile: bool | None = None,
    ) -> None:
        """iterations: at most this many Hessian-vector products, fewer once the residual is
        below tol × ‖∇_w E‖."""
        super().__init__(hyper_lr, steps, 0, warm_start, start, compile)
        self.iterations, self.tol = iterations, tol

    def solver_options(self) -> dict:
        return {"tol": self.tol}


FORMS = {"fixed-point": "fixed-point", "hessian": "neumann"}  # form → implicit.METHODS key


@STRATEGIES.register("ift-neumann")
class IFTNeumann(ImplicitHG):
    """Implicit differentiation by a truncated Neumann series: as ift-cg, with the linear system
    solved by `iterations` terms of a Neumann series, either on the training dynamics' step Φ
    (form "fixed-point": no step size, any stationary dynamics) or on the Hessian (form
    "hessian", step alpha < 2/L). Wrong where training has not converged; a series that does
    not contract diverges.

    The fixed-point form solves (I − ∂Φ/∂s)ᵀ v = ∇_s E and needs no step size; the Hessian form
    needs `alpha` < 2/L.
    """

    domains = {
        **COMMON,
        "iterations": Interval(1, integer=True),
        "form": Choice(tuple(FORMS)),
        "alpha": Interval(0, meaning="the Hessian form's step; 0 with the fixed-point form"),
    }

    @classmethod
    def check_params(cls, params: dict) -> None:
        hessian, alpha = params.get("form") == "hessian", params.get("alpha", 0.0)
        if hessian and not alpha > 0:
            raise ParamError("alpha", "the Hessian form needs a step", "set 0 < alpha < 2/L")
        if not hessian and alpha:
            raise ParamError(
                "alpha",
                "the fixed-point form takes Φ's own step, not alpha",
                'drop alpha or set form = "hessian"',
            )

    def __init__(
        self,
        iterations: int = 50,
        form: str = "fixed-point",
        alpha: float = 0.0,
        hyper_lr: float = 0.0,
        steps: int = 0,
        warm_start: bool = False,
        start: str = "default",
        compile: bool | None = None,
    ) -> None:
        """iterations: K, the series' products; form: "fixed-point" or "hessian" (needs alpha)."""
        self.check_params({"form": form, "alpha": alpha})
        super().__init__(hyper_lr, steps, 0, warm_start, start, compile)
        self.iterations, self.form, self.alpha = iterations, form, alpha
        self.method = FORMS[form]

    def solver_options(self) -> dict:
        return {"alpha": self.alpha} if self.form == "hessian" else {}
