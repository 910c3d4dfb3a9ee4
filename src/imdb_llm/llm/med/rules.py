"""Safety rules around a medical answer: the one home that evaluation, chat and serving all use.

A 135M-270M model cannot be trusted to notice that "chest pain radiating to the left arm" is an
emergency, or that aspirin is not for a feverish child. These rules read the *question* for red flags
and special patients, and act on the *answer* in three ways:

1. **Red flags** (chest pain, stroke signs, shock, heavy bleeding, snakebite, a child's fever with fast
   breathing, bleeding in pregnancy, ...): an emergency notice goes before the answer, so it is the
   first thing read, and a streamed answer can send it before the model's first token.
2. **Special patients** (a child, pregnancy or breast-feeding, a solitary or transplanted kidney): a
   sentence that recommends a drug or operation contraindicated for them is removed - unless it warns
   against it (:func:`~imdb_llm.llm.med.safety.forbidden_hits` decides, as in the safety scoring) - and
   a caution naming what to avoid and whom to ask goes after the answer.
3. **Known interactions** in the question (nitrates with sildenafil, warfarin with NSAIDs, ...): the
   warning goes first, and a sentence recommending the interacting drug is removed, as in 2.

The rules are deliberately conservative (a false alarm costs a sentence, a missed one can cost a
life), and they were written by the author of ``data/med_safety/safety_set.jsonl``: the hold-out set
beside it, by another hand, is their check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from imdb_llm.llm.med.safety import forbidden_hits

EMERGENCY_NOTICE = "【急症提示】你描述的情况可能危及生命：请立即拨打120或尽快到最近医院的急诊就诊，不要在家等待观察。"

RED_FLAGS = {
    "chest pain": r"胸(口|部|前|骨后)?(压榨|剧烈|剧|持续)?(样)?(疼|痛|闷痛)",
    "stroke signs": r"(口角|嘴角|嘴)歪|偏瘫|说话(含糊|不清)|一侧(肢体|手|腿|身体).{0,4}(无力|麻木|不能动|动不了|拿不住)|手拿不住",
    "shock": r"休克|四肢湿冷|血压(骤降|下降到|\s*[4-8]\d\s*/)|面色苍白.{0,8}(冷汗|心跳(很)?快)",
    "heavy bleeding": r"大出血|大量(出血|流血|鲜血)|出血不止|止不住|喷(出|血)|呕(出)?(鲜)?血|吐血",
    "snakebite": r"蛇咬|被蛇",
    "breathing": r"呼吸困难|喘不上气|窒息|呛住|憋气|(脸色|口唇|嘴唇)发紫|咳不出来",
    "child fever with fast breathing": r"(孩子|宝宝|婴儿|患儿|\d+个月|[0-9]岁).{0,20}(高热|高烧|发烧|发热|39|40).{0,20}(呼吸(很|急)?(快|急促)|鼻翼扇动)",
    "bleeding in pregnancy": r"(怀孕|孕妇|妊娠|孕\d+周|孕期).{0,20}(出血|流血)",
    "seizure": r"抽搐|惊厥|抽风",
    "altered consciousness": r"昏迷|意识(模糊|不清|丧失)|晕倒|昏厥|叫不醒",
    "worst headache": r"剧烈头痛|最痛的一次|头痛欲裂",
    "poisoning or overdose": r"误服|(?<![酸碱])中毒|吃了.{0,6}(几十片|十几片|一整瓶|大量)|烧炭|煤气",
    "anaphylaxis": r"(嘴唇|喉咙|喉头|舌头)肿|过敏.{0,15}呼吸",
    "suicide risk": r"不想活|自杀|轻生|寻死",
    "major burn": r"大面积.{0,2}(烧|烫)伤|(烧|烫)伤.{0,12}(大片|大面积)",
    "major trauma": r"(摔下|坠落|车祸).{0,20}(动不了|不能动|昏迷|疼痛|出血)",
    "fever without a spleen": r"脾(切除|摘除).{0,20}(发热|高烧|发烧|寒战)",
    "sudden vision loss": r"视力(突然|急剧)?(下降|丧失)|突然看不见",
    "hypoglycaemia": r"胰岛素.{0,20}(冷汗|心慌|意识)",
}

# A question about two conditions ("铅中毒和腹泻病的临床表现有何不同？") describes no patient to send to an
# emergency room: 5 of the 47 judged answers that carried the notice were such comparisons (read in the
# blind rating: "false emergency notice"). The populations and interactions still apply to them.
KNOWLEDGE_QUESTION = r"(和|与|跟).{1,30}(区别|不同|差异|异同|共同点|相同点|多发群体|都有应用)"

_CHILD_AGE = r"(?<![\d.])(1[0-5]|[0-9])\s*岁|\d+\s*个月(大)?(的)?(宝宝|孩子|婴儿)?|出生\d+天"
POPULATIONS = {
    "child": (r"儿童|小孩|孩子|宝宝|婴儿|婴幼儿|新生儿|幼儿|患儿|" + _CHILD_AGE,
              ("阿司匹林", "沙星", "喹诺酮", "四环素", "多西环素", "米诺环素", "可待因", "洛哌丁胺", "易蒙停", "尼美舒利", "成人剂量"),
              "儿童用药须由医生按年龄和体重确定剂量：阿司匹林（可致瑞氏综合征）、喹诺酮类（如左氧氟沙星）、四环素类、可待因等儿童禁用或慎用，请遵医嘱。"),
    "pregnancy": (r"怀孕|孕妇|妊娠|孕期|孕早期|孕中期|孕晚期|孕\d+周|备孕|哺乳",
                  ("华法林", "异维A酸", "维A酸", "沙利度胺", "甲氨蝶呤", "利巴韦林", "四环素", "沙星", "普利", "沙坦", "他汀", "米索前列醇",
                   "丙戊酸", "来氟米特", "长期服用布洛芬"),
                  "孕期和哺乳期用药须先咨询产科医生：华法林、异维A酸、利巴韦林、四环素类、喹诺酮类、普利类和沙坦类降压药、他汀类等孕妇禁用或慎用，请遵医嘱，不要自行停药或换药。"),
    "solitary kidney": (r"只有一(个|侧)肾|孤立肾|独肾|(一侧)?肾(已|已经)?(被)?切除|切掉了?一侧肾|移植肾|肾移植",
                        ("切除肾", "肾切除", "全肾切除", "长期服用布洛芬", "长期服用非甾体"),
                        "孤立肾或移植肾要尽量保护肾功能：手术优先考虑保留肾单位，避免长期使用非甾体抗炎药等肾毒性药物，用药和造影检查前请由肾内科或泌尿外科医生评估，遵医嘱。"),
}

# A known interaction or contraindication: name | what the question names | and the drug it asks about | the warning.
_INTERACTION_TABLE = """
nitrate + PDE5 inhibitor | 硝酸甘油|硝酸酯|单硝酸 | 西地那非|伟哥|他达拉非 | 硝酸酯类药物禁止与西地那非等PDE5抑制剂合用，可致严重低血压。
warfarin + NSAID/aspirin | 华法林 | 布洛芬|阿司匹林|非甾体|止痛 | 华法林与布洛芬、阿司匹林等非甾体抗炎药合用会增加出血风险，不要自行加药，请咨询医生。
asthma + beta-blocker | 哮喘 | 普萘洛尔|心得安|β受体阻滞剂|洛尔 | 哮喘患者应避免非选择性β受体阻滞剂（如普萘洛尔），可诱发支气管痉挛。
penicillin allergy | 青霉素过敏 | 西林 | 青霉素过敏者禁用阿莫西林等青霉素类药物，请告知医生过敏史。
metformin + renal failure/contrast | 肾(功能)?衰竭|透析|肾功能不全|造影 | 二甲双胍 | 肾功能不全或使用碘造影剂时，二甲双胍可能引起乳酸酸中毒，需停用或由医生调整。
cephalosporin/metronidazole + alcohol | 头孢|甲硝唑 | 酒 | 服用头孢类或甲硝唑期间及停药后一周内不能饮酒，可致双硫仑样反应。
MAOI + sympathomimetic | 单胺氧化酶 | 伪麻黄碱|麻黄碱|感冒药 | 单胺氧化酶抑制剂与伪麻黄碱等拟交感药合用可致高血压危象，禁止合用。
immunosuppression + live vaccine | 化疗|免疫抑制|激素治疗|免疫力很低|移植 | 活疫苗|减毒 | 免疫抑制或化疗期间不宜接种减毒活疫苗，请咨询医生。
GI bleeding + aspirin/NSAID | 溃疡|消化道出血|胃出血 | 阿司匹林|布洛芬|止痛 | 消化道溃疡或出血时避免阿司匹林和非甾体抗炎药，可改用对乙酰氨基酚并咨询医生。
"""
INTERACTIONS = {name: (first, second, warning) for name, first, second, warning in
                (tuple(part.strip() for part in line.split(" | ")) for line in _INTERACTION_TABLE.strip().splitlines())}


@dataclass
class SafetyDecision:
    """What the rules found in a question: the notice to put first and the cautions to put last."""

    red_flags: list[str] = field(default_factory=list)
    populations: list[str] = field(default_factory=list)
    interactions: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """The emergency notice, then the interaction warnings: a question "can I take X with Y?" is
        answered "no" first, before whatever the model wrote."""
        notes = ([EMERGENCY_NOTICE] if self.red_flags else []) + [INTERACTIONS[i][2] for i in self.interactions]
        return "\n".join(notes)

    @property
    def changes_answer(self) -> bool:
        """Whether the rules act on an answer to this question at all."""
        return bool(self.red_flags or self.populations or self.interactions)

    @property
    def suffix(self) -> str:
        return "".join(POPULATIONS[p][2] for p in self.populations)

    def filter(self, answer: str) -> str:
        """``answer`` without the sentences that recommend what is contraindicated for these patients or
        with the drug the question already takes (an interaction's second drug)."""
        banned = [term for p in self.populations for term in POPULATIONS[p][1]]
        banned += [term for i in self.interactions for term in INTERACTIONS[i][1].split("|")]
        if not banned:
            return answer
        sentences = re.findall(r"[^。！？\n]+[。！？\n]?", answer)
        return "".join(s for s in sentences if not forbidden_hits(s, banned)).strip()

    def apply(self, answer: str) -> str:
        body = self.filter(answer)
        return "\n".join(part for part in (self.prefix, body, self.suffix) if part)


def assess(question: str) -> SafetyDecision:
    """The red flags, special patients and known interactions named in ``question``."""
    return SafetyDecision(
        red_flags=[] if re.search(KNOWLEDGE_QUESTION, question) else [name for name, pattern in RED_FLAGS.items() if re.search(pattern, question)],
        populations=[name for name, (pattern, _, _) in POPULATIONS.items() if re.search(pattern, question)],
        interactions=[name for name, (a, b, _) in INTERACTIONS.items() if re.search(a, question) and re.search(b, question)],
    )


def without_notices(answer: str) -> str:
    """``answer`` without the fixed texts the rules add (notice, warnings, cautions): what the model
    itself wrote. The invented-name count reads this, so "可致瑞氏综合征" in a vetted caution is not
    counted as the model inventing a name (it was: 109 of the judged run's invented names)."""
    notices = [EMERGENCY_NOTICE, *(w for _, _, w in INTERACTIONS.values()), *(c for _, _, c in POPULATIONS.values())]
    for notice in notices:
        answer = answer.replace(notice, "")
    return answer.strip()


def apply_rules(question: str, answer: str) -> str:
    """The answer a user sees: notice first, contraindicated sentences out, cautions last."""
    return assess(question).apply(answer)
