"""A small parallel text: one short passage, the same content in English and ten other languages.

Token counts only compare across languages when the content is held fixed, and no multilingual
corpus ships with Python, so the book carries its own: five plain sentences about a town library,
written for this book in English and translated by hand. The translations aim at ordinary,
natural phrasing (the numbers are spelled out as words everywhere) rather than literary polish;
they are meant for measuring tokenizers, not for teaching the languages.
"""

from __future__ import annotations

# language name -> (script, text). English first; the rest roughly from Latin script outwards.
_PASSAGES: dict[str, tuple[str, str]] = {
    "English": (
        "Latin",
        "The library opens at nine in the morning and closes at six in the evening. "
        "Every week, volunteers teach children to read and write. "
        "Last year the town built a new room for computers. "
        "Many people come here to look for work, to study, or simply to rest. "
        "Books are free for everyone who lives in the town.",
    ),
    "German": (
        "Latin",
        "Die Bibliothek öffnet um neun Uhr morgens und schließt um sechs Uhr abends. "
        "Jede Woche bringen Freiwillige den Kindern das Lesen und Schreiben bei. "
        "Letztes Jahr hat die Stadt einen neuen Raum für Computer gebaut. "
        "Viele Menschen kommen hierher, um Arbeit zu suchen, zu lernen oder sich einfach auszuruhen. "
        "Bücher sind für alle, die in der Stadt wohnen, kostenlos.",
    ),
    "Spanish": (
        "Latin",
        "La biblioteca abre a las nueve de la mañana y cierra a las seis de la tarde. "
        "Cada semana, unos voluntarios enseñan a los niños a leer y escribir. "
        "El año pasado, el pueblo construyó una sala nueva para ordenadores. "
        "Mucha gente viene aquí para buscar trabajo, estudiar o simplemente descansar. "
        "Los libros son gratuitos para todos los que viven en el pueblo.",
    ),
    "Russian": (
        "Cyrillic",
        "Библиотека открывается в девять часов утра и закрывается в шесть часов вечера. "
        "Каждую неделю волонтёры учат детей читать и писать. "
        "В прошлом году город построил новый зал для компьютеров. "
        "Многие люди приходят сюда, чтобы найти работу, учиться или просто отдохнуть. "
        "Книги бесплатны для всех, кто живёт в городе.",
    ),
    "Greek": (
        "Greek",
        "Η βιβλιοθήκη ανοίγει στις εννέα το πρωί και κλείνει στις έξι το απόγευμα. "
        "Κάθε εβδομάδα, εθελοντές μαθαίνουν στα παιδιά να διαβάζουν και να γράφουν. "
        "Πέρσι η πόλη έχτισε μια καινούργια αίθουσα για υπολογιστές. "
        "Πολλοί άνθρωποι έρχονται εδώ για να βρουν δουλειά, να μελετήσουν ή απλώς να ξεκουραστούν. "
        "Τα βιβλία είναι δωρεάν για όλους όσοι μένουν στην πόλη.",
    ),
    "Arabic": (
        "Arabic",
        "تفتح المكتبة في الساعة التاسعة صباحا وتغلق في الساعة السادسة مساء. "
        "في كل أسبوع يعلم متطوعون الأطفال القراءة والكتابة. "
        "في العام الماضي بنت البلدة قاعة جديدة للحواسيب. "
        "يأتي كثير من الناس إلى هنا للبحث عن عمل أو للدراسة أو للراحة فقط. "
        "الكتب مجانية لكل من يسكن في البلدة.",
    ),
    "Hindi": (
        "Devanagari",
        "पुस्तकालय सुबह नौ बजे खुलता है और शाम छह बजे बंद होता है। "
        "हर हफ़्ते स्वयंसेवक बच्चों को पढ़ना और लिखना सिखाते हैं। "
        "पिछले साल शहर ने कंप्यूटरों के लिए एक नया कमरा बनाया। "
        "बहुत से लोग यहाँ काम ढूँढने, पढ़ाई करने या बस आराम करने आते हैं। "
        "शहर में रहने वाले सभी लोगों के लिए किताबें मुफ़्त हैं।",
    ),
    "Chinese": (
        "Han",
        "图书馆早上九点开门，晚上六点关门。"
        "每个星期，志愿者都会教孩子们读书写字。"
        "去年，镇上建了一间新的电脑室。"
        "很多人来这里找工作、学习，或者只是休息一下。"
        "住在镇上的每个人都可以免费借书。",
    ),
    "Japanese": (
        "Kana and kanji",
        "図書館は朝九時に開き、夕方六時に閉まります。"
        "毎週、ボランティアが子どもたちに読み書きを教えています。"
        "去年、町はコンピューター用の新しい部屋を作りました。"
        "多くの人が仕事を探したり、勉強したり、ただ休んだりするためにここに来ます。"
        "町に住んでいる人は誰でも無料で本を借りられます。",
    ),
    "Korean": (
        "Hangul",
        "도서관은 아침 아홉 시에 문을 열고 저녁 여섯 시에 문을 닫습니다. "
        "매주 자원봉사자들이 아이들에게 읽기와 쓰기를 가르칩니다. "
        "작년에 마을은 컴퓨터를 위한 새 방을 만들었습니다. "
        "많은 사람들이 일자리를 찾거나 공부하거나 그냥 쉬기 위해 이곳에 옵니다. "
        "마을에 사는 사람이라면 누구나 책을 무료로 빌릴 수 있습니다.",
    ),
    "Thai": (
        "Thai",
        "ห้องสมุดเปิดเวลาเก้าโมงเช้าและปิดเวลาหกโมงเย็น "
        "ทุกสัปดาห์ อาสาสมัครจะสอนเด็ก ๆ ให้อ่านและเขียนหนังสือ "
        "เมื่อปีที่แล้ว เมืองได้สร้างห้องใหม่สำหรับคอมพิวเตอร์ "
        "ผู้คนจำนวนมากมาที่นี่เพื่อหางาน เพื่อเรียน หรือเพียงเพื่อพักผ่อน "
        "ทุกคนที่อาศัยอยู่ในเมืองสามารถยืมหนังสือได้ฟรี",
    ),
}


def parallel_passage() -> dict[str, str]:
    """The same five-sentence passage in eleven languages: ``{language: text}``, English first.

        >>> texts = parallel_passage(); texts["English"].split(".")[0]
        'The library opens at nine in the morning and closes at six in the evening'
    """
    return {language: text for language, (_, text) in _PASSAGES.items()}


def passage_scripts() -> dict[str, str]:
    """The writing system of each language in ``parallel_passage``: ``{language: script}``."""
    return {language: script for language, (script, _) in _PASSAGES.items()}
