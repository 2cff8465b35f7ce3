/**
 * The scale-out recipe: for a run that outgrows the tab, the run's data as JSONL and the same run
 * written for Hugging Face TRL + PEFT (SFTTrainer with a LoraConfig, multi-GPU with
 * `accelerate launch`) and for Axolotl, with the same hyperparameters.
 */
import type { TrainConfig } from '../config';
import type { LoraConfig } from '../peft/lora';

export interface RecipeInput {
  /** A hub repository or a local folder path, as the scripts will load it. */
  baseModel: string;
  method: 'lora' | 'full' | 'bitfit' | 'prompt';
  lora: LoraConfig | null;
  /** Prompt tuning's number of virtual tokens. */
  virtualTokens?: number;
  train: TrainConfig;
  /** Plain text (packed into windows), or prompt/completion pairs with the template applied. */
  data: { text: string } | { pairs: { prompt: string; completion: string }[]; completionOnly: boolean; packing?: boolean };
  /** QLoRA: the base loaded in 8 or 4 bits (bitsandbytes) in the scripts. */
  quantBits?: 4 | 8;
}

/** The run's data as the scripts read it. */
export function recipeJsonl(data: RecipeInput['data']): string {
  if ('text' in data) return textToJsonl(data.text);
  return data.pairs.map((p) => JSON.stringify({ prompt: p.prompt, completion: p.completion })).join('\n') + '\n';
}

/** The text as JSONL records of paragraphs, each at most about `maxChars` long. */
export function textToJsonl(text: string, maxChars = 2000): string {
  const out: string[] = [];
  let current = '';
  for (const para of text.replace(/\r\n/g, '\n').split(/\n{2,}/)) {
    const p = para.trim();
    if (!p) continue;
    if (current && current.length + p.length + 2 > maxChars) {
      out.push(current);
      current = '';
    }
    current = current ? `${current}\n\n${p}` : p;
    while (current.length > maxChars) {
      out.push(current.slice(0, maxChars));
      current = current.slice(maxChars);
    }
  }
  if (current) out.push(current);
  return out.map((t) => JSON.stringify({ text: t })).join('\n') + '\n';
}

/** transformers' schedule settings closest to tabtune's (which decays to min_lr, not to 0). */
function scheduler(t: TrainConfig): string {
  if (t.lr_scheduler === 'constant') return '    lr_scheduler_type="constant_with_warmup",';
  if (t.lr_scheduler === 'cosine') {
    return `    lr_scheduler_type="cosine_with_min_lr",\n    lr_scheduler_kwargs={"min_lr": ${t.min_lr}},`;
  }
  return `    lr_scheduler_type="linear",${t.min_lr > 0 ? `  # tabtune decays linearly to min_lr=${t.min_lr}; transformers' linear ends at 0` : ''}`;
}

const py = (v: unknown): string => (v === true ? 'True' : v === false ? 'False' : v === null ? 'None' : JSON.stringify(v));

export function trlScript(r: RecipeInput): string {
  const t = r.train;
  const targets = r.lora ? (r.lora.target_modules === 'all-linear' ? '"all-linear"' : py(r.lora.target_modules)) : '';
  const peft = r.method === 'prompt'
    ? `peft_config = PromptTuningConfig(
    task_type="CAUSAL_LM",
    num_virtual_tokens=${r.virtualTokens ?? 8},
    prompt_tuning_init="SAMPLE_VOCAB",
)`
    : r.lora
    ? `peft_config = LoraConfig(
    r=${r.lora.r},
    lora_alpha=${r.lora.lora_alpha},
    lora_dropout=${r.lora.lora_dropout},
    target_modules=${targets},
    use_rslora=${py(r.lora.use_rslora)},
    bias="none",
    task_type="CAUSAL_LM",
)`
    : 'peft_config = None  # full fine-tuning';
  const bitfit =
    r.method === 'bitfit'
      ? `
# BitFit: only the biases train.
for name, param in model.named_parameters():
    param.requires_grad = name.endswith(".bias")
`
      : '';
  const pairs = !('text' in r.data);
  const dataArgs = pairs
    ? `    completion_only_loss=${py((r.data as { completionOnly: boolean }).completionOnly)},  # prompt/completion rows: the loss on the completion only, or on both\n    packing=${py(!!(r.data as { packing?: boolean }).packing)},`
    : '    dataset_text_field="text",\n    packing=True,';
  const quantized = r.quantBits === 4
    ? 'quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype="float32")  # QLoRA: the base in NF4\n'
    : r.quantBits === 8
      ? 'quantization = BitsAndBytesConfig(load_in_8bit=True)  # QLoRA-style: the base in 8 bits\n'
      : '';
  return `# Written by tabtune: the same run as in the browser, for TRL + PEFT on GPUs.
#   pip install "trl>=0.19" peft datasets accelerate${r.quantBits ? ' bitsandbytes' : ''}
#   accelerate launch train_trl.py            # every GPU of this machine
#   accelerate launch --num_processes 8 train_trl.py
from datasets import load_dataset
from peft import LoraConfig, PromptTuningConfig
from transformers import AutoModelForCausalLM${r.quantBits ? ', BitsAndBytesConfig' : ''}
from trl import SFTConfig, SFTTrainer

BASE_MODEL = ${py(r.baseModel)}

dataset = load_dataset("json", data_files="train.jsonl", split="train")
${quantized}model = AutoModelForCausalLM.from_pretrained(BASE_MODEL${r.quantBits ? ', quantization_config=quantization' : ''})
${bitfit}
${peft}

args = SFTConfig(
    output_dir="out",
${dataArgs}
    max_length=${t.block_size},  # called max_seq_length before TRL 0.16
    max_steps=${t.steps},
    per_device_train_batch_size=${t.batch_size},
    gradient_accumulation_steps=${t.grad_accum_steps},
    learning_rate=${t.learning_rate},
${scheduler(t)}
    warmup_steps=${t.warmup_steps},
    optim=${py(t.optimizer === 'sgd' ? 'sgd' : 'adamw_torch')},${t.optimizer === 'sgd' && t.momentum > 0 ? `  # tabtune used momentum ${t.momentum}; transformers' "sgd" has none: pass your own optimizer to match` : ''}
    adam_beta1=${t.beta1},
    adam_beta2=${t.beta2},
    adam_epsilon=${t.eps},
    weight_decay=${t.weight_decay},
    max_grad_norm=${t.grad_clip > 0 ? t.grad_clip : 'None'},
    seed=${t.seed},
    logging_steps=10,
    save_strategy="no",
    report_to="none",
)

trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, peft_config=peft_config)
trainer.train()
trainer.save_model("out")  # a PEFT adapter folder for LoRA, the whole model otherwise
`;
}

export function axolotlConfig(r: RecipeInput): string {
  const t = r.train;
  const lines = [
    '# Written by tabtune: the same run for Axolotl (axolotl train axolotl.yaml).',
    `base_model: ${JSON.stringify(r.baseModel)}`,
    'datasets:',
    '  - path: train.jsonl',
    '    ds_type: json',
    ...('text' in r.data
      ? ['    type: completion', `sequence_len: ${t.block_size}`, 'sample_packing: true']
      : [
          '    type:  # prompt/completion rows, the template already applied',
          '      field_instruction: prompt',
          '      field_output: completion',
          '      format: "{instruction}"',
          '      no_input_format: "{instruction}"',
          `train_on_inputs: ${!(r.data as { completionOnly: boolean }).completionOnly}`,
          `sequence_len: ${t.block_size}`,
          `sample_packing: ${!!(r.data as { packing?: boolean }).packing}`,
        ]),
  ];
  if (r.method === 'bitfit') lines.push('# BitFit: only the biases train.', 'unfrozen_parameters:', "  - '.*\\.bias$'");
  if (r.lora) {
    if (r.quantBits) lines.push(r.quantBits === 4 ? 'load_in_4bit: true' : 'load_in_8bit: true');
    lines.push(r.quantBits === 4 ? 'adapter: qlora' : 'adapter: lora', `lora_r: ${r.lora.r}`, `lora_alpha: ${r.lora.lora_alpha}`, `lora_dropout: ${r.lora.lora_dropout}`);
    if (r.lora.target_modules === 'all-linear') lines.push('lora_target_linear: true');
    else lines.push('lora_target_modules:', ...r.lora.target_modules.map((m) => `  - ${m}`));
    if (r.lora.use_rslora) lines.push('peft_use_rslora: true');
  }
  lines.push(
    `micro_batch_size: ${t.batch_size}`,
    `gradient_accumulation_steps: ${t.grad_accum_steps}`,
    `max_steps: ${t.steps}`,
    `learning_rate: ${t.learning_rate}`,
    `lr_scheduler: ${t.lr_scheduler === 'constant' ? 'constant_with_warmup' : t.lr_scheduler}`,
    ...(t.lr_scheduler === 'cosine' && t.learning_rate > 0 ? [`cosine_min_lr_ratio: ${t.min_lr / t.learning_rate}`] : []),
    `warmup_steps: ${t.warmup_steps}`,
    `optimizer: ${t.optimizer === 'sgd' ? 'sgd' : 'adamw_torch'}${t.optimizer === 'sgd' && t.momentum > 0 ? `  # tabtune used momentum ${t.momentum}; set it in your optimizer args` : ''}`,
    `adam_beta1: ${t.beta1}`,
    `adam_beta2: ${t.beta2}`,
    `adam_epsilon: ${t.eps}`,
    `weight_decay: ${t.weight_decay}`,
    `max_grad_norm: ${t.grad_clip}`,
    `seed: ${t.seed}`,
    'output_dir: ./out',
  );
  return lines.join('\n') + '\n';
}

/** Every file of the recipe, by name. */
export function scaleOutRecipe(r: RecipeInput): Map<string, string> {
  // Axolotl has no prompt tuning: that recipe is TRL + PEFT only.
  const axolotl: [string, string][] = r.method === 'prompt' ? [] : [['axolotl.yaml', axolotlConfig(r)]];
  return new Map([
    ['train.jsonl', recipeJsonl(r.data)],
    ['train_trl.py', trlScript(r)],
    ...axolotl,
    [
      'README.md',
      `# Scale-out recipe from tabtune\n\nThe run's data (\`train.jsonl\`) and the same run for bigger machines:\n\n` +
        `- TRL + PEFT: \`pip install "trl>=0.19" peft datasets accelerate\`, then \`accelerate launch train_trl.py\` (all GPUs of the machine).\n` +
        (r.method === 'prompt' ? '- Axolotl has no prompt tuning; use the TRL script.\n' : `- Axolotl: \`axolotl train axolotl.yaml\`.\n`) +
        `\nBase model: \`${r.baseModel}\`; method: ${r.method}.\n`,
    ],
  ]);
}
