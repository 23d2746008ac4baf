/**
 * Self-generated chat data (English and Chinese) for pretraining the demo model, so that it knows the chat
 * format and both languages before the LoRA demo teaches it an identity. Deterministic for a seed; nothing in
 * it mentions the demo's persona.
 */

/** One exchange. */
export interface Exchange {
  user: string;
  assistant: string;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FACTS_EN: [string, string][] = [
  ["What color is the sky?", "The sky is blue."],
  ["What color is grass?", "Grass is green."],
  ["What color is snow?", "Snow is white."],
  ["What do cats say?", "Cats say meow."],
  ["What do dogs say?", "Dogs say woof."],
  ["How many days are in a week?", "There are seven days in a week."],
  ["How many legs does a spider have?", "A spider has eight legs."],
  ["What is the opposite of hot?", "The opposite of hot is cold."],
  ["What is the opposite of day?", "The opposite of day is night."],
  ["Where does the sun rise?", "The sun rises in the east."],
  ["What do bees make?", "Bees make honey."],
  ["What is ice made of?", "Ice is frozen water."],
  ["Which season is the coldest?", "Winter is the coldest season."],
  ["What do we breathe?", "We breathe air."],
  ["What do fish live in?", "Fish live in water."],
  ["Who wrote Hamlet?", "William Shakespeare wrote Hamlet."],
  ["Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."],
];

const FACTS_ZH: [string, string][] = [
  ["天空是什么颜色？", "天空是蓝色的。"],
  ["草是什么颜色？", "草是绿色的。"],
  ["雪是什么颜色？", "雪是白色的。"],
  ["猫怎么叫？", "猫喵喵叫。"],
  ["狗怎么叫？", "狗汪汪叫。"],
  ["一周有几天？", "一周有七天。"],
  ["蜘蛛有几条腿？", "蜘蛛有八条腿。"],
  ["热的反义词是什么？", "热的反义词是冷。"],
  ["白天的反义词是什么？", "白天的反义词是黑夜。"],
  ["太阳从哪里升起？", "太阳从东方升起。"],
  ["蜜蜂会做什么？", "蜜蜂会酿蜂蜜。"],
  ["冰是由什么组成的？", "冰是冻住的水。"],
  ["哪个季节最冷？", "冬天最冷。"],
  ["鱼生活在哪里？", "鱼生活在水里。"],
  ["谁写了哈姆雷特？", "莎士比亚写了哈姆雷特。"],
];

const GREETINGS: Exchange[] = [
  { user: "Hello!", assistant: "Hello! How can I help you today?" },
  { user: "Good morning.", assistant: "Good morning! What would you like to talk about?" },
  { user: "Thank you.", assistant: "You are welcome." },
  { user: "你好！", assistant: "你好！有什么可以帮你的吗？" },
  { user: "早上好。", assistant: "早上好！你想聊些什么？" },
  { user: "谢谢你。", assistant: "不客气。" },
];

const NUMBERS_ZH = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];

/** `count` exchanges mixing arithmetic, facts, greetings and Shakespeare quotes in both languages. */
export function syntheticChat(count: number, seed: number, shakespeareLines: readonly string[]): Exchange[] {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const out: Exchange[] = [];
  while (out.length < count) {
    const a = Math.floor(r() * 10),
      b = Math.floor(r() * 10);
    switch (Math.floor(r() * 8)) {
      case 0:
        out.push({ user: `What is ${a} plus ${b}?`, assistant: `${a} plus ${b} is ${a + b}.` });
        break;
      case 1:
        out.push({ user: `What is ${a} times ${b}?`, assistant: `${a} times ${b} is ${a * b}.` });
        break;
      case 2:
        out.push({ user: `${a}加${b}等于几？`, assistant: `${a}加${b}等于${a + b}。` });
        break;
      case 3:
        out.push({ user: `${NUMBERS_ZH[a]}乘以${NUMBERS_ZH[b]}是多少？`, assistant: `${a}乘以${b}是${a * b}。` });
        break;
      case 4: {
        const [q, ans] = pick(FACTS_EN);
        out.push({ user: q, assistant: ans });
        break;
      }
      case 5: {
        const [q, ans] = pick(FACTS_ZH);
        out.push({ user: q, assistant: ans });
        break;
      }
      case 6:
        out.push(pick(GREETINGS));
        break;
      default:
        out.push({ user: "Say a line from Shakespeare.", assistant: pick(shakespeareLines) });
    }
  }
  return out;
}
