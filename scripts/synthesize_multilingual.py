"""Synthetic non-English speech for checking what compression does to a multilingual Whisper.

SYNTHETIC: the audio is text-to-speech, not people. It is a stand-in where no real non-English
recordings are available offline; real users' speech in these languages will score worse (dense
and compressed alike). The same 20 everyday sentences in English, German, French, Spanish,
Italian, Portuguese, Dutch and Polish (translated by hand), each spoken by two synthetic voices:
SVOX Pico (`pico2wave`, Debian package libttspico-utils, non-free) for de/fr/es/it, and eSpeak NG
(`espeak-ng`, Debian package espeak-ng) with a male and a female variant for every language.

    apt-get install espeak-ng libttspico-utils   # Pico is in Debian's non-free component
    python scripts/synthesize_multilingual.py -o ~/speech-multilingual
    python scripts/synthesize_multilingual.py --calibration -o ~/speech-multilingual-calibration

Writes OUT/LANG/NNNN-VOICE.wav (16 kHz mono) with OUT/LANG/transcripts.tsv (the sentence in
LANG), OUT/LANG-to-en.tsv (the same audio, the English sentence: a reference for translation)
and OUT/multilingual.json (languages, voices, sentences, and the word SYNTHETIC). With --calibration:
four other paragraphs per language (de, fr, es, it) for calibrating with a language mix, no
translations.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000

SENTENCES = {
    "en": [
        "The weather was cold this morning, so I took the bus to work.",
        "My sister lives in a small house near the river.",
        "We need to buy bread, milk and cheese before the shop closes.",
        "The train to the city leaves at half past eight.",
        "The children played football in the park all afternoon.",
        "I am reading a very interesting book about history.",
        "Could you please tell me where the nearest pharmacy is?",
        "The meeting has been moved to next Tuesday.",
        "He forgot his keys at home and had to wait outside.",
        "The museum is open every day except Monday.",
        "Our neighbours bought a new car last week.",
        "She drinks a cup of coffee every morning before breakfast.",
        "The doctor said that I should sleep more and work less.",
        "In summer we often go swimming in the lake.",
        "The restaurant on the corner serves excellent fish.",
        "Please turn off the light when you leave the room.",
        "My grandfather was born in a village in the mountains.",
        "The students have to finish their homework by Friday.",
        "It started to rain just as we arrived at the station.",
        "I would like to learn to play the piano.",
    ],
    "de": [
        "Heute Morgen war es kalt, deshalb bin ich mit dem Bus zur Arbeit gefahren.",
        "Meine Schwester wohnt in einem kleinen Haus in der Nähe des Flusses.",
        "Wir müssen Brot, Milch und Käse kaufen, bevor der Laden schließt.",
        "Der Zug in die Stadt fährt um halb neun ab.",
        "Die Kinder haben den ganzen Nachmittag im Park Fußball gespielt.",
        "Ich lese gerade ein sehr interessantes Buch über Geschichte.",
        "Können Sie mir bitte sagen, wo die nächste Apotheke ist?",
        "Die Besprechung wurde auf nächsten Dienstag verschoben.",
        "Er hat seine Schlüssel zu Hause vergessen und musste draußen warten.",
        "Das Museum ist jeden Tag außer Montag geöffnet.",
        "Unsere Nachbarn haben letzte Woche ein neues Auto gekauft.",
        "Sie trinkt jeden Morgen vor dem Frühstück eine Tasse Kaffee.",
        "Der Arzt hat gesagt, dass ich mehr schlafen und weniger arbeiten soll.",
        "Im Sommer gehen wir oft im See schwimmen.",
        "Das Restaurant an der Ecke serviert ausgezeichneten Fisch.",
        "Bitte mach das Licht aus, wenn du den Raum verlässt.",
        "Mein Großvater wurde in einem Dorf in den Bergen geboren.",
        "Die Studenten müssen ihre Hausaufgaben bis Freitag fertig machen.",
        "Es fing gerade an zu regnen, als wir am Bahnhof ankamen.",
        "Ich würde gern Klavier spielen lernen.",
    ],
    "fr": [
        "Il faisait froid ce matin, alors j'ai pris le bus pour aller au travail.",
        "Ma sœur habite dans une petite maison près de la rivière.",
        "Nous devons acheter du pain, du lait et du fromage avant la fermeture du magasin.",
        "Le train pour la ville part à huit heures et demie.",
        "Les enfants ont joué au football dans le parc tout l'après-midi.",
        "Je lis un livre très intéressant sur l'histoire.",
        "Pourriez-vous me dire où se trouve la pharmacie la plus proche ?",
        "La réunion a été déplacée à mardi prochain.",
        "Il a oublié ses clés à la maison et a dû attendre dehors.",
        "Le musée est ouvert tous les jours sauf le lundi.",
        "Nos voisins ont acheté une nouvelle voiture la semaine dernière.",
        "Elle boit une tasse de café tous les matins avant le petit-déjeuner.",
        "Le médecin a dit que je devrais dormir plus et travailler moins.",
        "En été, nous allons souvent nager dans le lac.",
        "Le restaurant du coin sert un excellent poisson.",
        "Éteignez la lumière quand vous quittez la pièce, s'il vous plaît.",
        "Mon grand-père est né dans un village de montagne.",
        "Les étudiants doivent finir leurs devoirs avant vendredi.",
        "Il a commencé à pleuvoir juste au moment où nous arrivions à la gare.",
        "J'aimerais apprendre à jouer du piano.",
    ],
    "es": [
        "Esta mañana hacía frío, así que tomé el autobús para ir al trabajo.",
        "Mi hermana vive en una casa pequeña cerca del río.",
        "Tenemos que comprar pan, leche y queso antes de que cierre la tienda.",
        "El tren a la ciudad sale a las ocho y media.",
        "Los niños jugaron al fútbol en el parque toda la tarde.",
        "Estoy leyendo un libro muy interesante sobre historia.",
        "¿Podría decirme dónde está la farmacia más cercana?",
        "La reunión se ha cambiado al próximo martes.",
        "Olvidó las llaves en casa y tuvo que esperar fuera.",
        "El museo abre todos los días excepto los lunes.",
        "Nuestros vecinos compraron un coche nuevo la semana pasada.",
        "Ella toma una taza de café todas las mañanas antes del desayuno.",
        "El médico dijo que debería dormir más y trabajar menos.",
        "En verano solemos ir a nadar al lago.",
        "El restaurante de la esquina sirve un pescado excelente.",
        "Por favor, apaga la luz cuando salgas de la habitación.",
        "Mi abuelo nació en un pueblo de la montaña.",
        "Los estudiantes tienen que terminar los deberes antes del viernes.",
        "Empezó a llover justo cuando llegamos a la estación.",
        "Me gustaría aprender a tocar el piano.",
    ],
    "it": [
        "Stamattina faceva freddo, quindi ho preso l'autobus per andare al lavoro.",
        "Mia sorella abita in una piccola casa vicino al fiume.",
        "Dobbiamo comprare pane, latte e formaggio prima che il negozio chiuda.",
        "Il treno per la città parte alle otto e mezza.",
        "I bambini hanno giocato a calcio nel parco tutto il pomeriggio.",
        "Sto leggendo un libro molto interessante sulla storia.",
        "Potrebbe dirmi dov'è la farmacia più vicina?",
        "La riunione è stata spostata a martedì prossimo.",
        "Ha dimenticato le chiavi a casa e ha dovuto aspettare fuori.",
        "Il museo è aperto tutti i giorni tranne il lunedì.",
        "I nostri vicini hanno comprato una macchina nuova la settimana scorsa.",
        "Lei beve una tazza di caffè ogni mattina prima della colazione.",
        "Il medico ha detto che dovrei dormire di più e lavorare di meno.",
        "D'estate andiamo spesso a nuotare nel lago.",
        "Il ristorante all'angolo serve un pesce eccellente.",
        "Per favore, spegni la luce quando esci dalla stanza.",
        "Mio nonno è nato in un paese di montagna.",
        "Gli studenti devono finire i compiti entro venerdì.",
        "Ha cominciato a piovere proprio quando siamo arrivati alla stazione.",
        "Vorrei imparare a suonare il pianoforte.",
    ],
    "pt": [
        "Esta manhã estava frio, por isso apanhei o autocarro para o trabalho.",
        "A minha irmã vive numa casa pequena perto do rio.",
        "Temos de comprar pão, leite e queijo antes de a loja fechar.",
        "O comboio para a cidade parte às oito e meia.",
        "As crianças jogaram futebol no parque durante toda a tarde.",
        "Estou a ler um livro muito interessante sobre história.",
        "Pode dizer-me onde fica a farmácia mais próxima?",
        "A reunião foi adiada para a próxima terça-feira.",
        "Ele esqueceu-se das chaves em casa e teve de esperar lá fora.",
        "O museu está aberto todos os dias exceto à segunda-feira.",
        "Os nossos vizinhos compraram um carro novo na semana passada.",
        "Ela bebe uma chávena de café todas as manhãs antes do pequeno-almoço.",
        "O médico disse que eu devia dormir mais e trabalhar menos.",
        "No verão vamos muitas vezes nadar no lago.",
        "O restaurante da esquina serve um peixe excelente.",
        "Por favor, apaga a luz quando saíres da sala.",
        "O meu avô nasceu numa aldeia nas montanhas.",
        "Os estudantes têm de acabar os trabalhos de casa até sexta-feira.",
        "Começou a chover mesmo quando chegámos à estação.",
        "Gostava de aprender a tocar piano.",
    ],
    "nl": [
        "Het was koud vanochtend, dus ik nam de bus naar mijn werk.",
        "Mijn zus woont in een klein huis vlak bij de rivier.",
        "We moeten brood, melk en kaas kopen voordat de winkel dichtgaat.",
        "De trein naar de stad vertrekt om half negen.",
        "De kinderen hebben de hele middag in het park gevoetbald.",
        "Ik lees een heel interessant boek over geschiedenis.",
        "Kunt u mij vertellen waar de dichtstbijzijnde apotheek is?",
        "De vergadering is verplaatst naar volgende week dinsdag.",
        "Hij was zijn sleutels thuis vergeten en moest buiten wachten.",
        "Het museum is elke dag open behalve op maandag.",
        "Onze buren hebben vorige week een nieuwe auto gekocht.",
        "Ze drinkt elke ochtend een kop koffie voor het ontbijt.",
        "De dokter zei dat ik meer moet slapen en minder moet werken.",
        "In de zomer gaan we vaak zwemmen in het meer.",
        "Het restaurant op de hoek serveert uitstekende vis.",
        "Doe alsjeblieft het licht uit als je de kamer verlaat.",
        "Mijn grootvader is geboren in een dorp in de bergen.",
        "De studenten moeten hun huiswerk voor vrijdag afmaken.",
        "Het begon te regenen net toen we bij het station aankwamen.",
        "Ik zou graag piano leren spelen.",
    ],
    "pl": [
        "Dziś rano było zimno, więc pojechałem do pracy autobusem.",
        "Moja siostra mieszka w małym domu niedaleko rzeki.",
        "Musimy kupić chleb, mleko i ser, zanim sklep zostanie zamknięty.",
        "Pociąg do miasta odjeżdża o wpół do dziewiątej.",
        "Dzieci przez całe popołudnie grały w piłkę w parku.",
        "Czytam bardzo ciekawą książkę o historii.",
        "Czy może mi pan powiedzieć, gdzie jest najbliższa apteka?",
        "Spotkanie zostało przeniesione na przyszły wtorek.",
        "Zapomniał kluczy z domu i musiał czekać na zewnątrz.",
        "Muzeum jest otwarte codziennie oprócz poniedziałku.",
        "Nasi sąsiedzi kupili w zeszłym tygodniu nowy samochód.",
        "Ona pije filiżankę kawy każdego ranka przed śniadaniem.",
        "Lekarz powiedział, że powinienem więcej spać i mniej pracować.",
        "Latem często chodzimy pływać w jeziorze.",
        "Restauracja na rogu serwuje doskonałe ryby.",
        "Proszę zgasić światło, kiedy wychodzisz z pokoju.",
        "Mój dziadek urodził się w wiosce w górach.",
        "Studenci muszą skończyć pracę domową do piątku.",
        "Zaczęło padać akurat wtedy, gdy dotarliśmy na dworzec.",
        "Chciałbym nauczyć się grać na pianinie.",
    ],
}
# Calibration audio: other texts than SENTENCES (the evaluation never hears its own calibration), a
# paragraph per clip so that a 30 s window holds more speech than padding.
PARAGRAPHS = {
    "de": [
        "Am Wochenende besuchen wir oft unsere Großeltern auf dem Land. Sie haben einen großen Garten mit "
        "Apfelbäumen und Gemüse. Meine Großmutter kocht dann immer eine Suppe. Nach dem Essen gehen wir im Wald "
        "spazieren.",
        "Der Zug hatte zwanzig Minuten Verspätung, weil ein Baum auf den Gleisen lag. Viele Fahrgäste waren "
        "verärgert und riefen ihre Familien an. Der Schaffner entschuldigte sich mehrmals. Am Ende kamen wir "
        "trotzdem rechtzeitig zum Konzert.",
        "Unsere Firma sucht einen neuen Mitarbeiter für die Buchhaltung. Die Stelle ist ab dem ersten März frei. "
        "Bewerbungen können per E-Mail geschickt werden. Das Vorstellungsgespräch findet im Büro in der "
        "Innenstadt statt.",
        "Im Herbst fallen die Blätter von den Bäumen und die Tage werden kürzer. Viele Menschen trinken dann gern "
        "heißen Tee. Die Kinder sammeln Kastanien im Park. Abends sitzen wir zusammen und lesen.",
    ],
    "fr": [
        "Le week-end, nous rendons souvent visite à nos grands-parents à la campagne. Ils ont un grand jardin "
        "avec des pommiers et des légumes. Ma grand-mère prépare toujours une soupe. Après le repas, nous allons "
        "nous promener dans la forêt.",
        "Le train avait vingt minutes de retard parce qu'un arbre était tombé sur la voie. Beaucoup de voyageurs "
        "étaient mécontents et ont appelé leur famille. Le contrôleur s'est excusé plusieurs fois. Finalement, "
        "nous sommes quand même arrivés à l'heure pour le concert.",
        "Notre entreprise cherche un nouvel employé pour la comptabilité. Le poste est disponible à partir du "
        "premier mars. Les candidatures peuvent être envoyées par courriel. L'entretien aura lieu au bureau, dans "
        "le centre-ville.",
        "En automne, les feuilles tombent des arbres et les jours raccourcissent. Beaucoup de gens aiment alors "
        "boire du thé chaud. Les enfants ramassent des châtaignes dans le parc. Le soir, nous restons ensemble et "
        "nous lisons.",
    ],
    "es": [
        "Los fines de semana visitamos a menudo a nuestros abuelos en el campo. Tienen un jardín grande con "
        "manzanos y verduras. Mi abuela siempre prepara una sopa. Después de comer, damos un paseo por el bosque.",
        "El tren llegó con veinte minutos de retraso porque un árbol había caído sobre la vía. Muchos pasajeros "
        "estaban enfadados y llamaron a sus familias. El revisor pidió disculpas varias veces. Al final, llegamos "
        "a tiempo al concierto.",
        "Nuestra empresa busca un nuevo empleado para la contabilidad. El puesto está disponible a partir del uno "
        "de marzo. Las solicitudes se pueden enviar por correo electrónico. La entrevista será en la oficina del "
        "centro de la ciudad.",
        "En otoño las hojas caen de los árboles y los días se hacen más cortos. Mucha gente prefiere entonces "
        "beber té caliente. Los niños recogen castañas en el parque. Por la noche nos sentamos juntos a leer.",
    ],
    "it": [
        "Nel fine settimana andiamo spesso a trovare i nonni in campagna. Hanno un grande giardino con alberi di "
        "mele e verdure. La nonna prepara sempre una minestra. Dopo pranzo facciamo una passeggiata nel bosco.",
        "Il treno aveva venti minuti di ritardo perché un albero era caduto sui binari. Molti passeggeri erano "
        "arrabbiati e hanno telefonato alle loro famiglie. Il controllore si è scusato più volte. Alla fine siamo "
        "arrivati in tempo per il concerto.",
        "La nostra azienda cerca un nuovo impiegato per la contabilità. Il posto è disponibile dal primo marzo. "
        "Le domande si possono inviare per posta elettronica. Il colloquio si terrà nell'ufficio in centro.",
        "In autunno le foglie cadono dagli alberi e le giornate si accorciano. Molte persone amano bere un tè "
        "caldo. I bambini raccolgono castagne nel parco. La sera stiamo insieme e leggiamo.",
    ],
}
PICO = {"de": "de-DE", "fr": "fr-FR", "es": "es-ES", "it": "it-IT"}
ESPEAK = {"de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "nl": "nl", "pl": "pl"}
LANGUAGES = ("de", "fr", "es", "it", "pt", "nl", "pl")


def voices(language: str) -> list[tuple[str, list[str]]]:
    """(voice name, command with {wav} and {text} to fill) for one language: Pico where it has the language,
    else a second eSpeak variant."""
    espeak = ESPEAK[language]
    out = [("espeak-m", ["espeak-ng", "-v", f"{espeak}+m3", "-s", "150", "-w", "{wav}", "{text}"])]
    if language in PICO:
        out.append(("pico", ["pico2wave", "-l", PICO[language], "-w", "{wav}", "{text}"]))
    else:
        out.append(("espeak-f", ["espeak-ng", "-v", f"{espeak}+f2", "-s", "140", "-w", "{wav}", "{text}"]))
    return out


def speak(command: list[str], text: str, scratch: Path) -> np.ndarray:
    wav = scratch / "speech.wav"
    subprocess.run([part.format(wav=wav, text=text) for part in command], check=True, capture_output=True)
    samples, rate = sf.read(wav, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
    peak = float(np.max(np.abs(samples))) or 1.0
    return (samples * (0.7 / peak)).astype(np.float32)  # the same level for every voice


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        writer.writerow(("file", "transcript"))
        writer.writerows(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--languages", help="comma-separated (default: all seven; with --calibration: de,fr,es,it)")
    parser.add_argument("--calibration", action="store_true",
                        help="write calibration audio instead: other texts (a paragraph a clip), no translations")
    args = parser.parse_args()
    texts = PARAGRAPHS if args.calibration else SENTENCES
    languages = args.languages.split(",") if args.languages else [code for code in LANGUAGES if code in texts]
    if unknown := [code for code in languages if code not in texts]:
        print(f"error: no {'calibration ' if args.calibration else ''}texts for {', '.join(unknown)}", file=sys.stderr)
        return 2
    for tool in ("espeak-ng", "pico2wave"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed (apt-get install espeak-ng libttspico-utils)", file=sys.stderr)
            return 2
    if args.output.exists():
        print(f"error: {args.output} exists; remove it or choose another folder", file=sys.stderr)
        return 2
    staging = args.output.with_name(args.output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest = {"synthetic": True, "note": "SYNTHETIC text-to-speech, not human speech", "languages": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for language in languages:
            folder = staging / language
            folder.mkdir()
            native, english = [], []
            for voice, command in voices(language):
                for index, text in enumerate(texts[language]):
                    name = f"{index:04d}-{voice}.wav"
                    sf.write(folder / name, speak(command, text, Path(scratch)), SAMPLE_RATE, subtype="PCM_16")
                    native.append((name, text))
                    if not args.calibration:
                        english.append((f"{language}/{name}", SENTENCES["en"][index]))
            write_tsv(folder / "transcripts.tsv", native)
            if english:
                write_tsv(staging / f"{language}-to-en.tsv", english)
            manifest["languages"][language] = {"voices": [voice for voice, _ in voices(language)],
                                               "clips": len(native)}
            print(f"{language}: {len(native)} clips", file=sys.stderr)
    (staging / "multilingual.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    staging.rename(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
