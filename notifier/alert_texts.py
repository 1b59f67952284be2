"""The default texts of the operators' alerts on Meta's signals (Spanish, Río de la Plata).

Each alert kind has a title (also its subject), what happened, what it means for the business
and what to do: ``alert.<kind>.title|what|meaning|action``; the rows of its table are
``label.<fact>``. Meta's codes read in words through ``<family>.<CODE>`` (a code without a text
shows as Meta sent it). Any of them can be overridden in ``EMAIL_TEXTS_FILE``.
"""

from __future__ import annotations

ALERT_TEXTS: dict[str, str] = {
    # every alert
    "alert.subject": "[Mensajero] {title}",
    "alert.meaning": "Qué significa para el negocio",
    "alert.action": "Qué hacer",
    "alert.footer": "Si el mismo aviso se repite, te llega un resumen con la cantidad de veces.",
    "unknown": "(sin dato)",
    "label.received_at": "Recibido",
    "label.waba_id": "Cuenta de WhatsApp Business (ID)",
    "label.meta_event": "Evento de Meta",
    "label.restrictions": "Restricciones",
    "label.ban_state": "Estado de la cuenta",
    "label.ban_date": "Fecha de la baja",
    "label.violation_type": "Tipo de infracción",
    "label.number": "Número",
    "label.old_limit": "Límite anterior",
    "label.current_limit": "Límite actual",
    "label.template": "Plantilla",
    "label.language": "Idioma",
    "label.template_id": "ID de la plantilla",
    "label.reason": "Motivo de Meta",
    "label.reason_detail": "Detalle del motivo",
    "label.recommendation": "Recomendación de Meta",
    "label.disable_date": "Fecha en que se deshabilita",
    "label.more_info": "Más información de Meta",
    "label.previous_category": "Categoría anterior",
    "label.new_category": "Categoría nueva",
    "label.effective_at": "Rige desde",
    # the account
    "alert.account.restricted.title": "Meta restringió la cuenta de WhatsApp Business {waba_id}",
    "alert.account.restricted.what": "Meta le puso restricciones a la cuenta de WhatsApp Business"
    " {waba_id}. Abajo figura qué no puede hacer y hasta cuándo.",
    "alert.account.restricted.meaning": "Mientras dure cada restricción, Meta rechaza lo que"
    " restringe. Con los mensajes iniciados por el negocio restringidos no salen las plantillas"
    " (avisos, recordatorios, alertas a los agentes), así que los clientes que no escribieron en"
    " las últimas 24 horas no reciben nada. Si las infracciones siguen, Meta puede deshabilitar"
    " la cuenta.",
    "alert.account.restricted.action": "Entrá al Administrador de WhatsApp (Calidad de la cuenta),"
    " leé el aviso de Meta y corregí lo que señala, por ejemplo plantillas con muchas quejas o"
    " envíos a quien no los pidió. Si creés que es un error, pedí una revisión desde ahí. Cada"
    " restricción se levanta sola cuando vence.",
    "alert.account.disabled.title": "Meta deshabilitó la cuenta de WhatsApp Business {waba_id}",
    "alert.account.disabled.what": "Meta deshabilitó la cuenta de WhatsApp Business {waba_id}.",
    "alert.account.disabled.meaning": "Con la cuenta deshabilitada no sale ningún mensaje: Meta"
    " rechaza cada envío (código 131031), así que los clientes no reciben respuestas ni del bot"
    " ni de los agentes. Si la baja está programada, deja de enviar en la fecha indicada.",
    "alert.account.disabled.action": "Revisá el aviso de Meta en el Administrador de WhatsApp y, si"
    " no estás de acuerdo, apelá la decisión desde la Calidad de la cuenta. Mientras tanto,"
    " avisale al equipo de atención para que atienda a los clientes por otro canal.",
    "alert.account.violation.title": "Meta registró una infracción en la cuenta de WhatsApp"
    " Business {waba_id}",
    "alert.account.violation.what": "Meta registró que la cuenta de WhatsApp Business {waba_id}"
    " infringió sus políticas ({violation_type}).",
    "alert.account.violation.meaning": "Las infracciones se acumulan: si se repiten, Meta restringe"
    " lo que la cuenta puede enviar o la deshabilita.",
    "alert.account.violation.action": "Buscá la infracción en el Administrador de WhatsApp (Calidad"
    " de la cuenta), corregí el contenido o el uso que la causó y, si creés que es un error, pedí"
    " una revisión.",
    "alert.account.offboarded.title": "La cuenta de WhatsApp Business {waba_id} se dio de baja",
    "alert.account.offboarded.what": "Meta avisa que la cuenta de WhatsApp Business {waba_id} se"
    " dio de baja de la plataforma o se desconectó ({meta_event}).",
    "alert.account.offboarded.meaning": "Mensajero ya no puede enviar ni recibir mensajes con esa"
    " cuenta: los clientes que escriban no van a tener respuesta.",
    "alert.account.offboarded.action": "Confirmá en el Business Manager si la baja fue a propósito."
    " Si no, volvé a conectar la cuenta y revisá que el token (META_WA_ACCESS_TOKEN) y la"
    " suscripción a los webhooks sigan vigentes.",
    # the numbers
    "alert.quality.flagged.title": "Meta marcó como baja la calidad del número {number}",
    "alert.quality.flagged.what": "Meta marcó como baja la calidad del número {number}: muchos"
    " clientes lo bloquearon o lo denunciaron últimamente.",
    "alert.quality.flagged.meaning": "Si la calidad no mejora en los próximos días, Meta baja el"
    " límite de clientes por día con los que el número puede iniciar conversaciones.",
    "alert.quality.flagged.action": "Revisá qué plantillas mandaste últimamente y a quién: bajá la"
    " frecuencia del marketing, mandalo solo a quien lo pidió y hacé fácil darse de baja. La"
    " calidad del número se ve en el Administrador de WhatsApp.",
    "alert.quality.limit.title": "Meta bajó el límite de mensajes del número {number}",
    "alert.quality.limit.what": "Meta bajó el límite de mensajes del número {number}: de"
    " {old_limit} a {current_limit}.",
    "alert.quality.limit.meaning": "Con un límite menor, el negocio puede iniciar conversaciones"
    " con menos clientes por día; las respuestas a quien escribió siguen saliendo. Lo que pase el"
    " límite, Meta lo rechaza.",
    "alert.quality.limit.action": "Mejorá la calidad antes de volver a mandar campañas grandes:"
    " mandá plantillas solo a quien las pidió, bajá la frecuencia y revisá las que reciben quejas."
    " Cuando la calidad mejora, Meta vuelve a subir el límite.",
    # the templates
    "alert.template.paused.title": "Meta pausó la plantilla {template} ({language})",
    "alert.template.paused.what": "Meta pausó la plantilla {template} ({language}) porque los"
    " clientes la calificaron mal (bloqueos, denuncias o poca lectura).",
    "alert.template.paused.meaning": "Mientras esté pausada no se puede enviar: Mensajero rechaza"
    " esos envíos antes de llamar a Meta y los cuenta como fallidos. La primera pausa dura 3"
    " horas y la segunda 6; a la tercera, Meta la deshabilita.",
    "alert.template.paused.action": "Frená las campañas que usan esta plantilla, revisá el texto y"
    " a quién se la mandás, y esperá a que vuelva a estar activa. Si la editás, pasa de nuevo por"
    " revisión y no se puede usar hasta que Meta la apruebe.",
    "alert.template.disabled.title": "Meta deshabilitó la plantilla {template} ({language})",
    "alert.template.disabled.what": "Meta deshabilitó la plantilla {template} ({language}).",
    "alert.template.disabled.meaning": "La plantilla ya no se puede enviar: todo lo que la use"
    " falla, y Mensajero lo rechaza antes de llamar a Meta.",
    "alert.template.disabled.action": "Creá una plantilla nueva con otro texto (o pedí una revisión"
    " si creés que es un error) y cambiá la configuración que usaba esta, por ejemplo el aviso a"
    " los agentes o la plantilla para retomar una conversación.",
    "alert.template.rejected.title": "Meta rechazó la plantilla {template} ({language})",
    "alert.template.rejected.what": "Meta rechazó la plantilla {template} ({language}).",
    "alert.template.rejected.meaning": "La plantilla no se puede usar: los mensajes que la"
    " necesitan no salen hasta que haya una aprobada.",
    "alert.template.rejected.action": "Leé el motivo de Meta, corregí la plantilla y mandala a"
    " revisión otra vez, o apelá la decisión en el Administrador de WhatsApp.",
    "alert.template.marketing.title": "Meta pasó la plantilla {template} ({language}) a marketing",
    "alert.template.marketing.what": "Meta cambió la categoría de la plantilla {template}"
    " ({language}) de {previous_category} a marketing.",
    "alert.template.marketing.meaning": "Cada envío de esta plantilla se cobra como marketing, que"
    " es más caro, y no les llega a los clientes que pidieron no recibir marketing.",
    "alert.template.marketing.action": "Si la plantilla es de utilidad (avisos de un pedido, un"
    " turno, una cuenta), sacale el contenido promocional y pedí una revisión de la categoría, o"
    " creá una nueva de utilidad. Si no, tené en cuenta el costo nuevo.",
    # digests of alerts
    "digest.subject.alert": "[Mensajero] Resumen: {title} ({times})",
    "digest.intro.alert": "El mismo aviso de Meta llegó {times} entre el {first} y el {last}.",
    "digest.subject.notices": "[Mensajero] Resumen de {errors} avisos ({times} en total)",
    "digest.intro.notices": "Para no llenarte la casilla, juntamos estos {errors} avisos en un"
    " solo correo ({times} en total).",
    # Meta's codes in words
    "restriction.RESTRICTED_BIZ_INITIATED_MESSAGING": "iniciar conversaciones con clientes"
    " (mensajes iniciados por el negocio)",
    "restriction.RESTRICTED_CUSTOMER_INITIATED_MESSAGING": "responder a los clientes (mensajes"
    " iniciados por el cliente)",
    "restriction.RESTRICTED_ADD_PHONE_NUMBER_ACTION": "agregar números de teléfono a la cuenta",
    "restriction.until": "{restriction}, hasta el {until}",
    "ban_state.DISABLE": "deshabilitada",
    "ban_state.SCHEDULE_FOR_DISABLE": "programada para deshabilitarse",
    "tier.TIER_50": "50 clientes por día",
    "tier.TIER_250": "250 clientes por día",
    "tier.TIER_1K": "1.000 clientes por día",
    "tier.TIER_2K": "2.000 clientes por día",
    "tier.TIER_10K": "10.000 clientes por día",
    "tier.TIER_100K": "100.000 clientes por día",
    "tier.TIER_UNLIMITED": "sin límite",
    "category.UTILITY": "utilidad",
    "category.MARKETING": "marketing",
    "category.AUTHENTICATION": "autenticación",
    "reason.ABUSIVE_CONTENT": "contenido abusivo",
    "reason.INCORRECT_CATEGORY": "la categoría no corresponde al contenido",
    "reason.INVALID_FORMAT": "formato inválido",
    "reason.SCAM": "posible estafa",
    "reason.TAG_CONTENT_MISMATCH": "el contenido no coincide con la categoría o el idioma",
}
