"""Exit policies: where each sample may stop, learned online from confidences alone.

Pure Python and numpy, no I/O, so the live device and the offline replay run
the same code. One module per idea:

* :mod:`~splitexit.policies.plan` -- the plan a sample carries and the exit rule every tier applies;
* :mod:`~splitexit.policies.chain` -- where a plan sends a sample through the tiers, without running it;
* :mod:`~splitexit.policies.costs` -- the one cost model (λ per block, tier weights, o per link);
* :mod:`~splitexit.policies.splitee` -- UCB and the SplitEE family (SplitEE, SplitEE-S, I-SplitEE);
* :mod:`~splitexit.policies.dimee` -- DIMEE's three-tier cascade and its cluster router;
* :mod:`~splitexit.policies.cascade` -- one threshold for the device's exits, one for every later one;
* :mod:`~splitexit.policies.budget` -- a cost budget users state, kept by moving one α;
* :mod:`~splitexit.policies.accuracy` -- an accuracy budget users state, kept by measuring on shadow runs;
* :mod:`~splitexit.policies.drift` -- the label-free change detector on C_1;
* :mod:`~splitexit.policies.baselines` -- the reference policies that learn nothing;
* :mod:`~splitexit.policies.catalog` -- every policy by name, from one set of hyperparameters;
* :mod:`~splitexit.policies.replay` -- replaying a labelled stream offline, oracle and regret.
"""
