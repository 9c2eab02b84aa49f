"""Chat templates in the tool-calling formats of two model families, written for these tests (the released
templates are longer, with dates and built-in tools, but lay out tools, calls and results the same way):

- QWEN25: ChatML; the tools as JSON lines inside <tools></tools> in the system turn, an assistant's calls as
  <tool_call>{"name", "arguments"}</tool_call>, tool results as a user turn of <tool_response> blocks;
- LLAMA31: Llama 3 headers; "Environment: ipython", the tools as JSON in the first user turn with the
  instruction to answer {"name": ..., "parameters": ...}, an assistant's call as that JSON, results in an
  ``ipython`` turn; <|python_tag|> marks built-in tool calls.
"""

QWEN25 = """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within '
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
{%- for call in message.tool_calls or [] %}
{{- '\\n<tool_call>\\n{"name": "' + call.function.name + '", "arguments": ' + (call.function.arguments | tojson)
    + '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

QWEN25_TOKENS = (("<tool_call>", 4), ("</tool_call>", 4))  # user-defined tokens: their text is output

LLAMA31 = """\
{{- bos_token }}
{%- set msgs = messages %}
{%- set system = '' %}
{%- if msgs[0].role == 'system' %}{%- set system = msgs[0].content %}{%- set msgs = msgs[1:] %}{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}
{%- if tools %}{{- 'Environment: ipython\\n\\n' }}{%- endif %}
{{- system + '<|eot_id|>' }}
{%- for message in msgs %}
{%- if message.role == 'user' and tools and loop.first %}
{{- '<|start_header_id|>user<|end_header_id|>\\n\\nGiven the following functions, please respond with a JSON '
    'for a function call with its proper arguments that best answers the given prompt.\\n\\nRespond in the '
    'format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use '
    'variables.\\n\\n' }}
{%- for tool in tools %}{{- (tool | tojson(indent=4)) + '\\n\\n' }}{%- endfor %}
{{- message.content + '<|eot_id|>' }}
{%- elif message.role == 'assistant' and message.tool_calls %}
{%- set call = message.tool_calls[0].function %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n{"name": "' + call.name + '", "parameters": '
    + (call.arguments | tojson) + '}<|eot_id|>' }}
{%- elif message.role == 'tool' %}
{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
{%- else %}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""

LLAMA31_TOKENS = (("<|start_header_id|>", 3), ("<|end_header_id|>", 3), ("<|eot_id|>", 3), ("<|eom_id|>", 3),
                  ("<|python_tag|>", 3))
