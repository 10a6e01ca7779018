"""Training: TRL's trainers wrapped around cai's records.

Shared pieces every trainer uses: :mod:`~cai.train.config` (TRL config from YAML,
``--set`` overrides and options), :mod:`~cai.train.data` (records to
``datasets``), :mod:`~cai.train.models` (loading, LoRA, pad-token guard),
:mod:`~cai.train.guards` (stop and save on a NaN/inf loss),
:mod:`~cai.train.cards` (the model card) and :mod:`~cai.train.launch`
(re-launching through ``accelerate launch``). The trainers: :mod:`~cai.train.sft`,
:mod:`~cai.train.reward_model`, :mod:`~cai.train.dpo`, :mod:`~cai.train.rl`.
"""
