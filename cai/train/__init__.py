"""Training: TRL's trainers wrapped around cai's records.

Shared pieces every trainer uses: :mod:`~cai.train.common.config` (TRL config from YAML,
``--set`` overrides and options), :mod:`~cai.train.common.data` (records to
``datasets``), :mod:`~cai.train.common.models` (loading, LoRA, pad-token guard),
:mod:`~cai.train.common.guards` (stop and save on a NaN/inf loss),
:mod:`~cai.train.common.cards` (the model card) and :mod:`~cai.train.common.launch`
(re-launching through ``accelerate launch``). The trainers: :mod:`~cai.train.sft`,
:mod:`~cai.train.reward_model`, :mod:`~cai.train.dpo`, :mod:`~cai.train.rl`.
"""
