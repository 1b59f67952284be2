"""Default texts (Spanish, Río de la Plata). A company profile overrides any key in ``texts``.

Logic never writes a customer- or agent-visible sentence itself: it names a key here and
:func:`say` looks it up in the profile first.
"""

from __future__ import annotations

from typing import Any

from shared.profiles import CompanyProfile

DEFAULTS: dict[str, str] = {
    # ------------------------------------------------------------------ to the customer
    "handoff.customer.queued": (
        "Listo, le avisé a una persona del equipo. En cuanto alguien te tome te escribe por acá."
    ),
    "handoff.customer.already_queued": (
        "Ya le avisamos al equipo, en breve te escribe una persona. Si querés agregar algo, "
        "escribilo y se lo pasamos."
    ),
    "handoff.customer.claimed": "Hola, soy del equipo de {company}. ¿En qué te puedo ayudar?",
    "handoff.customer.no_agent": (
        "En este momento no hay nadie disponible para atenderte. Dejamos tu consulta registrada "
        "y te vamos a contactar."
    ),
    "handoff.customer.after_hours": (
        "Ahora estamos fuera de horario. {next_open_sentence} Dejamos tu consulta registrada."
    ),
    "handoff.customer.next_open": "Te vamos a responder a partir del {when}.",
    "handoff.customer.queue_timeout": (
        "Perdón la demora: nadie pudo tomar tu consulta todavía. La dejamos registrada y te "
        "vamos a contactar. Mientras tanto, el asistente sigue acá."
    ),
    "handoff.customer.queue_timeout_wait": (
        "Perdón la demora: seguimos buscando a alguien que te atienda."
    ),
    "handoff.customer.closed": (
        "La conversación con nuestro equipo terminó. ¡Gracias por escribirnos!"
    ),
    "handoff.customer.back_to_bot": "Te paso de nuevo con el asistente virtual.",
    "handoff.customer.idle_closed": (
        "Cerramos la conversación por falta de actividad. Si necesitás algo más, escribinos."
    ),
    "handoff.customer.ended_by_customer": "Listo, cerramos la conversación. ¡Gracias!",
    "handoff.customer.transferred": "Te paso con {agent}, que sigue con tu consulta.",
    "handoff.customer.someone": "otra persona del equipo",
    "handoff.rating.question": "¿Cómo te atendimos? Tocá una opción, nos ayuda a mejorar.",
    "handoff.rating.score_3": "😀 Muy bien",
    "handoff.rating.score_2": "😐 Regular",
    "handoff.rating.score_1": "😞 Mal",
    "handoff.rating.thanks": "¡Gracias por contarnos!",
    "handoff.rating.already": "Ya recibimos tu calificación, ¡gracias!",
    "handoff.rating.late": "Gracias, pero esa encuesta ya cerró.",
    # ------------------------------------------------------------------ to the agent
    "handoff.agent.notification": (
        "🔔 Caso #{code}: {name} ({phone}) quiere hablar con una persona.\n"
        "Últimos mensajes:\n{last_messages}\n\n"
        "Para atenderlo respondé: si no tenés otro caso, alcanza con escribir tu respuesta; si "
        "no, citá este mensaje o empezá con #{code}. También /tomar {code}."
    ),
    "handoff.agent.notification_no_messages": "(sin mensajes)",
    "handoff.agent.claimed": "Tomaste el caso #{code} ({name}, {phone}). {help_line}",
    "handoff.agent.claimed_help": (
        "Lo que escribas va al cliente. /fin para cerrarlo, /ayuda para ver los comandos."
    ),
    "handoff.agent.claimed_backlog": "Mientras esperaba escribió:\n{lines}",
    "handoff.agent.taken_by_other": "El caso #{code} ya lo tomó otro agente.",
    "handoff.agent.taken_by_you": "El caso #{code} ya es tuyo.",
    "handoff.agent.unknown_case": (
        "No encuentro el caso #{code}. Mandá /lista para ver los casos abiertos."
    ),
    "handoff.agent.case_closed": (
        "El caso #{code} ya está cerrado; tu mensaje no se envió a nadie."
    ),
    "handoff.agent.case_not_yours": (
        "El caso #{code} lo atiende otro agente; tu mensaje no se envió."
    ),
    "handoff.agent.which_case": (
        "No sé a qué caso va tu mensaje, no lo envié. Citá el mensaje del cliente o empezá con "
        "#código. Casos abiertos:\n{cases}"
    ),
    # Several cases could take an agent's message: it is kept while they choose from a list.
    "handoff.agent.choose_case": (
        "¿Para qué caso es tu mensaje? Elegilo en la lista y se lo mando. Lo guardo hasta las "
        "{until}; si no elegís, no lo envío y te aviso."
    ),
    "handoff.agent.choose_case_more": (
        "Tengo {count} mensajes tuyos guardados. ¿Para qué caso son? Elegilo en la lista y se "
        "los mando en orden. Los guardo hasta las {until}."
    ),
    "handoff.agent.choose_button": "Elegir caso",
    "handoff.agent.choose_section": "Casos",
    "handoff.agent.choose_row": "#{code} {name}",
    "handoff.agent.choose_row_queued": "{phone} · esperando",
    "handoff.agent.choose_row_yours": "{phone} · con vos",
    "handoff.agent.draft_expired": (
        "No elegiste a qué caso iba, así que no envié tu mensaje: {messages}"
    ),
    "handoff.agent.no_cases": "No hay casos abiertos.",
    "handoff.agent.list": "Casos abiertos:\n{cases}",
    "handoff.agent.list_line_queued": "#{code} · {name} ({phone}) · esperando",
    "handoff.agent.list_line_active": "#{code} · {name} ({phone}) · {who}",
    "handoff.agent.list_you": "con vos",
    "handoff.agent.list_other": "con otro agente",
    "handoff.agent.closed": "Cerraste el caso #{code}. El cliente volvió al asistente.",
    "handoff.agent.closed_by_customer": "El cliente cerró el caso #{code}.",
    "handoff.agent.idle_closed": "El caso #{code} se cerró por falta de actividad.",
    "handoff.agent.queue_timeout": "El caso #{code} se venció sin que nadie lo tomara.",
    "handoff.agent.no_case_to_close": (
        "No tenés un caso activo para cerrar. Usá /fin <código>, o /lista."
    ),
    "handoff.agent.unknown_command": "No conozco el comando {command}. {help}",
    "handoff.agent.missing_code": "Falta el código del caso: {usage}",
    "handoff.agent.help": (
        "Comandos:\n"
        "/lista: casos abiertos\n"
        "/tomar <código>: tomar un caso\n"
        "/fin [código]: cerrar un caso (el cliente vuelve al asistente)\n"
        "/bot [código]: devolver el cliente al asistente sin despedida\n"
        "/pasar <código> <agente>: pasarle un caso a un compañero (nombre o número)\n"
        "/pausa: no recibir casos nuevos; /vuelvo: recibirlos otra vez\n"
        "/r <nombre>: mandar una respuesta guardada; /r: ver cuáles hay\n"
        "/ayuda: esta ayuda\n"
        "Para escribirle a un cliente, escribí: va a tu caso activo; sin caso, tomás el que "
        "espera, y si esperan varios te pregunto cuál. Citá un mensaje o empezá con #código "
        "para elegir vos."
    ),
    "handoff.agent.relay_header": "#{code} · {name}:",
    "handoff.agent.relay_location": "#{code} · {name} compartió una ubicación:",
    "handoff.agent.relay_media": "#{code} · {name} mandó un archivo:",
    "handoff.agent.relay_reaction": "#{code} · {name} reaccionó {emoji}",
    "handoff.agent.relay_unsupported": (
        "#{code} · {name} mandó algo que no puedo reenviar ({kind})."
    ),
    "handoff.agent.customer_window_closed": (
        "Pasaron más de 24 h desde que {name} escribió por última vez: le mandamos una "
        "plantilla para retomar y tu mensaje le llega cuando responda."
    ),
    "handoff.agent.delivery_failed": (
        "No pude entregarle tu mensaje a {name} (caso #{code}): {reason}"
    ),
    "handoff.agent.not_relayable": "No puedo reenviar ese tipo de mensaje ({kind}).",
    "handoff.agent.no_text": "Tu mensaje está vacío; no envié nada.",
    "handoff.agent.echo": (
        "#{code} · Le respondieron a {name} desde la app de WhatsApp Business: {text}"
    ),
    "handoff.agent.identity_changed": "#{code} · {note} La conversación sigue en este caso.",
    "handoff.agent.transferred_to_you": (
        "📨 {from_agent} te pasó el caso #{code}: {name} ({phone}).\n"
        "Últimos mensajes:\n{last_messages}\n\n"
        "Lo que escribas va al cliente. /fin para cerrarlo, /ayuda para ver los comandos."
    ),
    "handoff.agent.transferred": "Le pasaste el caso #{code} a {to_agent}.",
    "handoff.agent.taken_over": (
        "{to_agent} tomó el caso #{code} ({name}) porque el cliente esperaba respuesta."
    ),
    "handoff.agent.unknown_agent": "No encuentro al agente «{agent}». Agentes:\n{agents}",
    "handoff.agent.agent_line": "{index}. {name}",
    "handoff.agent.transfer_not_active": (
        "El caso #{code} todavía no lo tomó nadie: tomalo con /tomar {code} antes de pasarlo."
    ),
    "handoff.agent.paused": (
        "Listo, estás en pausa: no te ofrezco casos nuevos (tus casos activos siguen con vos). "
        "/vuelvo para recibirlos otra vez."
    ),
    "handoff.agent.resumed": "¡Volviste! Te aviso de los casos nuevos.",
    "handoff.agent.canned_list": "Respuestas guardadas (mandá /r <nombre>):\n{replies}",
    "handoff.agent.canned_line": "• {reply}: {preview}",
    "handoff.agent.canned_none": "No hay respuestas guardadas.",
    "handoff.agent.canned_unknown": "No hay una respuesta guardada «{reply}». {replies}",
    "handoff.agent.no_active_case": (
        "No tenés un caso activo; tomá uno con /tomar <código> o mirá /lista."
    ),
    "handoff.agent.reply_offer": (
        "⏰ #{code} · {name} ({phone}) espera respuesta de {agent} hace {minutes} min. "
        "Si querés atenderlo vos: /tomar {code}"
    ),
    "handoff.agent.reply_offered": (
        "⏰ {name} (caso #{code}) espera tu respuesta hace {minutes} min: se lo ofrecí a los "
        "otros agentes. Si nadie lo toma, sigue con vos."
    ),
    "handoff.agent.reply_reminder": (
        "⏰ {name} (caso #{code}) espera tu respuesta hace {minutes} min."
    ),
    "handoff.agent.offer_answered": "El caso #{code} ya tuvo respuesta: sigue con {agent}.",
    # ------------------------------------------------------------------ in the transcript
    "handoff.transcript.transferred": "[{from_agent} le pasó el caso a {to_agent}]",
    "handoff.transcript.taken_over": (
        "[{to_agent} tomó el caso de {from_agent}: el cliente esperaba respuesta]"
    ),
    "handoff.transcript.echo": "[desde la app de WhatsApp Business] {text}",
    "handoff.transcript.system": "[aviso de WhatsApp] {text}",
    "handoff.identity.user_changed_number": (
        "{name} cambió su número de WhatsApp ({before} → {after})."
    ),
    "handoff.identity.user_changed_user_id": (
        "{name} cambió su identificador de WhatsApp ({before} → {after})."
    ),
    "handoff.identity.user_id_update": (
        "{name} cambió su identificador de WhatsApp ({before} → {after})."
    ),
    "handoff.identity.customer_identity_changed": (
        "Cambió la identidad de seguridad de WhatsApp de {name} (otro teléfono o una "
        "reinstalación)."
    ),
}


def say(profile: CompanyProfile, key: str, **values: Any) -> str:
    """The profile's text for ``key`` (or the default), with placeholders filled in."""
    return profile.text(key, DEFAULTS[key], **values)
